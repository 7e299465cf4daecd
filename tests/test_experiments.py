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
    assert all(
        experiment.budget_minutes("smoke") < experiment.budget_minutes("demo") for experiment in experiments.values()
    )
    assert experiments["cap1000"].data_months(["2025-01"]) == ["2025-01"]


def test_a_window_overrides_the_run_months_and_bad_rows_are_refused(tmp_path: Path) -> None:
    table = tmp_path / "experiments.yaml"
    table.write_text(
        "experiments:\n  - {name: jan, cap: 1000, model: tiny, minutes: 2, months: ['2024-01', '2024-02']}\n"
    )
    (experiment,) = load_experiments(table).values()
    assert experiment.data_months(["2025-01"]) == ["2024-01", "2024-02"]
    assert experiment.budget_minutes("smoke") == 2.0

    table.write_text("experiments:\n  - {name: big, cap: 1000, model: huge, minutes: 1}\n")
    with pytest.raises(ExperimentError, match="model 'huge'"):
        load_experiments(table)
    table.write_text(
        "experiments:\n  - {name: a, cap: 1000, model: tiny, minutes: 1}\n  - {name: a, cap: 1300, model: tiny, minutes: 1}\n"
    )
    with pytest.raises(ExperimentError, match="defined twice"):
        load_experiments(table)
