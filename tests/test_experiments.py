"""The experiment table is declarative and validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from transcend_pipeline.experiments import ExperimentError, Variant, load_experiments


def test_default_experiments_cover_the_papers_caps() -> None:
    experiments = load_experiments()
    assert {name: e.cap for name, e in experiments.items() if not e.variant and e.by_default} == {
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
    table.write_text("experiments:\n  - {name: typo, cap: 1200, model: tiny, steps: 1}\n")
    with pytest.raises(ExperimentError, match=r"cap 1200; the warehouse builds buckets for \[1000, 1300, 1500\]"):
        load_experiments(table)
    assert load_experiments(table, caps=[1200])["typo"].cap == 1200  # another project's caps


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


def test_the_diversity_study_has_both_dials_at_two_seeds_and_make_run_keeps_a_compact_comparison() -> None:
    experiments = load_experiments()
    study = [e for e in experiments.values() if e.study == "diversity"]
    dials = {}
    for e in study:
        dial = e.variant.dial if e.variant else ("rho", 0.0)
        dials.setdefault(dial, set()).add(e.seed)
    assert dials == {
        (d, v): {0, 1} for d, v in [("rho", 0.0), ("rho", 0.5), ("rho", 1.0)] + [("k", k) for k in (1, 2, 4, 16)]
    }
    assert {e.cap for e in study} == {1300} and len({e.budget_steps("demo") for e in study}) == 1
    # `make run`: ρ = 0 (the cap1300 bucket) against ρ = 1, one seed each, beside the three caps.
    assert sorted(name for name, e in experiments.items() if e.by_default) == [
        "cap1000", "cap1300", "cap1300_rho1", "cap1500"
    ]  # fmt: skip
    second = experiments["cap1300_rho1_seed1"]
    assert (second.arm, second.seed, second.variant, second.by_default) == ("cap1300_rho1", 1, Variant(rho=1.0), False)
    assert experiments["cap1300_rho1"].extra == {"confirm_temperature": 0.001}


def test_seeds_expand_a_row_into_partitions_that_share_its_data(tmp_path: Path) -> None:
    table = tmp_path / "experiments.yaml"
    table.write_text(
        "experiments:\n  - {name: arm, cap: 1300, model: tiny, steps: 10, seeds: [3, 7], variant: {equal_players: 4},"
        " study: diversity, by_default: false}\n"
    )
    experiments = load_experiments(table)
    assert [(n, e.arm, e.seed, e.by_default) for n, e in experiments.items()] == [
        ("arm", "arm", 3, False),
        ("arm_seed7", "arm", 7, False),
    ]
    for seeds in ("[]", "[1, 1]", "[-1]"):
        table.write_text(f"experiments:\n  - {{name: a, cap: 1000, model: tiny, steps: 1, seeds: {seeds}}}\n")
        with pytest.raises(ExperimentError, match="seeds"):
            load_experiments(table)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("{rho: 0.5, equal_players: 2}", "exactly one"),
        ("{}", "exactly one"),
        ("{rho: 1.5}", "rho must lie"),
        ("{equal_players: 0}", "positive integer"),
        ("{players: 2, colour: red}", "unknown variant keys"),
    ],
)
def test_a_variant_turns_exactly_one_valid_dial(tmp_path: Path, variant: str, message: str) -> None:
    table = tmp_path / "experiments.yaml"
    table.write_text(f"experiments:\n  - {{name: a, cap: 1000, model: tiny, steps: 1, variant: {variant}}}\n")
    with pytest.raises(ExperimentError, match=message):
        load_experiments(table)
