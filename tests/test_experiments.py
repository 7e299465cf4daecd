"""The experiment table is declarative and validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from transcend_pipeline.experiments import ExperimentError, load_experiments


def test_default_experiments_cover_the_papers_caps() -> None:
    experiments = load_experiments()
    assert {name: experiment.cap for name, experiment in experiments.items() if not experiment.variant} == {
        "cap1000": 1000,
        "cap1300": 1300,
        "cap1500": 1500,
    }
    assert {
        (experiment.budget_steps("demo"), experiment.budget_steps("smoke")) for experiment in experiments.values()
    } == {(1500, 60)}  # equal budgets for every arm
    assert experiments["cap1000"].data_months(["2025-01"]) == ["2025-01"]


def test_a_window_overrides_the_run_months_and_bad_rows_are_refused(tmp_path: Path) -> None:
    table = tmp_path / "experiments.yaml"
    table.write_text(
        "experiments:\n  - {name: jan, cap: 1000, model: tiny, steps: 200, months: ['2024-01', '2024-02']}\n"
    )
    (experiment,) = load_experiments(table).values()
    assert experiment.data_months(["2025-01"]) == ["2024-01", "2024-02"]
    assert experiment.budget_steps("smoke") == experiment.budget_steps("demo") == 200

    table.write_text("experiments:\n  - {name: big, cap: 1000, model: huge, steps: 1}\n")
    with pytest.raises(ExperimentError, match="model 'huge'"):
        load_experiments(table)
    table.write_text(
        "experiments:\n  - {name: a, cap: 1000, model: tiny, steps: 1}\n  - {name: a, cap: 1300, model: tiny, steps: 1}\n"
    )
    with pytest.raises(ExperimentError, match="defined twice"):
        load_experiments(table)


@pytest.mark.parametrize("steps", ["0", "-5", "2.5", "true", "'100'", "{demo: 100, smoke: 0.5}"])
def test_a_step_budget_must_be_a_positive_integer(tmp_path: Path, steps: str) -> None:
    table = tmp_path / "experiments.yaml"
    table.write_text(f"experiments:\n  - {{name: a, cap: 1000, model: tiny, steps: {steps}}}\n")
    with pytest.raises(ExperimentError, match="expected a positive integer"):
        load_experiments(table)


def test_a_profile_without_a_budget_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "experiments.yaml"
    table.write_text("experiments:\n  - {name: a, cap: 1000, model: tiny, steps: {demo: 100}}\n")
    (experiment,) = load_experiments(table).values()
    assert experiment.budget_steps("demo") == 100
    with pytest.raises(ExperimentError, match="no training budget for profile 'smoke'"):
        experiment.budget_steps("smoke")
