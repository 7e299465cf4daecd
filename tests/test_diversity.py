"""The diversity study's table, answer and figures, from verdict, ground-truth and state-advantage rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from transcend_pipeline.diversity import (
    COMMON,
    OWN,
    dial_contrasts,
    plot_dose_response,
    reading,
    seed_spread,
    study_arms,
    study_rows,
    study_section,
)
from transcend_pipeline.experiments import load_experiments
from transcend_pipeline.state_advantage import (
    BUCKET_HELD_OUT,
    CLONE,
    CONSENSUS,
    HELD_OUT,
    MODEL,
    ArgmaxComparison,
    GainSummary,
)


def verdict(experiment: str, diff_clone: float) -> dict:
    return {
        "experiment": experiment,
        "confirm_temperature": 0.001,
        "confirm_games": 400,
        "bar": "best",
        "diff_bar": diff_clone + 50,
        "diff_bar_low": diff_clone - 10,
        "diff_bar_high": diff_clone + 110,
        "transcends": diff_clone > 10,
        "clone": "clone(best)",
        "diff_clone": diff_clone,
        "diff_clone_low": diff_clone - 60,
        "diff_clone_high": diff_clone + 60,
        "p_clone_holm": 0.01 if diff_clone > 60 else 0.5,
        "beats_clone": diff_clone > 60,
    }


def comparison(experiment: str, source: str, kind: str, reward_gain: float) -> ArgmaxComparison:
    """A row whose reward exceeds the clone's by `reward_gain` (its deep regret is that much lower)."""
    return ArgmaxComparison(
        experiment, source, f"{kind}-policy", kind, 300, 40, 8, 0.5 + reward_gain, 0.02, 0.05 - reward_gain,
        0.01, 0.02, 0.0, 0.5, 0.0, -0.01, 0.01, -reward_gain, -reward_gain - 0.01, -reward_gain + 0.01,
        **({"best_expert_policy": "player(best)", "condition_diff": 0.02, "condition_low": 0.01,
            "condition_high": 0.03} if kind == CONSENSUS else {}),
    )  # fmt: skip


def test_study_rows_set_play_ground_truth_and_advantage_side_by_side_on_common_and_own_positions(tmp_path: Path):
    experiments = load_experiments()
    arms = study_arms(experiments)
    by_name = {arm.experiment: arm for arm in arms}
    assert (by_name["cap1300"].dial, by_name["cap1300"].value, by_name["cap1300"].variant) == ("rho", 0.0, False)
    assert (by_name["cap1300_equal16_seed1"].dial, by_name["cap1300_equal16_seed1"].value) == ("k", 16.0)
    assert by_name["cap1300"].sources == {COMMON: HELD_OUT, OWN: HELD_OUT}
    assert by_name["cap1300_rho1"].sources == {COMMON: BUCKET_HELD_OUT, OWN: HELD_OUT}
    evaluated = {"cap1300": 120.0, "cap1300_seed1": 80.0, "cap1300_rho1": -5.0, "cap1300_rho1_seed1": 15.0}
    verdicts = [verdict(name, diff) for name, diff in evaluated.items()]
    comparisons = [
        comparison(name, source, kind, gain)
        for name in evaluated
        for source in (HELD_OUT, BUCKET_HELD_OUT)
        for kind, gain in ((MODEL, 0.004 if "rho" not in name else 0.0), (CLONE, 0.0), (CONSENSUS, 0.01))
    ]
    advantages = [
        GainSummary(name, source, t, 300, 40, 0.5, 0.48, 0.52, 0.01 * (t < 1), 0.0, 0.02, 0.5, 0.4)
        for name in evaluated
        for source in (HELD_OUT, BUCKET_HELD_OUT)
        for t in (0.001, 1.0)
    ]
    rows = study_rows(arms, verdicts, comparisons, advantages)
    assert len(rows) == 2 * len(evaluated)  # arms not evaluated are left out; each evaluated one twice
    row = next(r for r in rows if r["experiment"] == "cap1300_rho1" and r["positions_from"] == COMMON)
    assert row["source"] == BUCKET_HELD_OUT and row["diff_clone"] == -5.0 and row["value"] == 1.0
    assert row["theory_diff"] == pytest.approx(0.01) and row["theory_low"] < 0.01 < row["theory_high"]
    assert row["learned_diff"] == pytest.approx(0.0) and row["condition_diff"] == 0.02
    assert row["advantage_temperature"] == 0.001 and row["gain"] == pytest.approx(0.01)
    assert seed_spread(rows)["cap1300"] == (100.0, 80.0, 120.0, 2)
    answer = reading(rows)
    assert "at ρ = 1, model − clone(best) is -5 [-65, +55] (seed 0); +15 [-45, +75] (seed 1)" in answer
    assert "at ρ = 0, model − clone(best) is +120 [+60, +180] (seed 0)" in answer
    figure = plot_dose_response(rows, tmp_path / "dose.png")
    assert figure.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.path.stat().st_size > 10_000
    section = study_section(rows, {"cap1300 (full bucket)": {"games": 10, "players": 3}}, {"gain": "dose.png"})
    assert section.count("| cap1300_rho1 | ρ = 1 | 0 |") == 3  # play, common and own ground truth (seed 0)
    assert "Spread over training seeds" in section and "![gain](dose.png)" in section
    assert "+1.00 [+0.00, +2.00]" in section  # the theory's 0.01 per move, ×100


def test_the_claims_between_arms_set_every_evaluated_arm_against_its_dials_least_diverse_one():
    arms = study_arms(load_experiments())
    evaluated = {"cap1300", "cap1300_seed1", "cap1300_rho0.5", "cap1300_rho1", "cap1300_rho1_seed1"}
    evaluated |= {"cap1300_equal1", "cap1300_equal4", "cap1300_equal16", "cap1300_equal16_seed1"}
    contrasts = dial_contrasts(arms, evaluated)
    assert [(c.dial, c.arm, c.value, c.base, c.base_value) for c in contrasts] == [
        ("rho", "cap1300", 0.0, "cap1300_rho1", 1.0),
        ("rho", "cap1300_rho0.5", 0.5, "cap1300_rho1", 1.0),
        ("k", "cap1300_equal4", 4.0, "cap1300_equal1", 1.0),
        ("k", "cap1300_equal16", 16.0, "cap1300_equal1", 1.0),
    ]
    assert contrasts[0].experiments == ("cap1300", "cap1300_seed1")  # every evaluated seed of the arm
    assert contrasts[0].base_experiments == ("cap1300_rho1", "cap1300_rho1_seed1")
    assert contrasts[3].experiments == ("cap1300_equal16", "cap1300_equal16_seed1")
    assert dial_contrasts(arms, {"cap1300", "cap1300_equal1"}) == []  # one arm per dial: nothing to compare

    rows = [
        {"dial": c.dial, "arm": c.arm, "value": c.value, "base": c.base, "base_value": c.base_value,
         "seeds": len(c.experiments), "base_seeds": len(c.base_experiments), "diff": diff, "low": diff - 90,
         "high": diff + 90, "p": 0.001, "p_holm": 0.01, "level": 0.99, "claims": 4, "larger": True}
        for c, diff in zip(contrasts, (150.0, 40.0, 20.0, 120.0), strict=True)
    ]  # fmt: skip
    answer = reading([], rows)
    assert "the gain of ρ = 0 − ρ = 1 is +150 [+60, +240]" in answer
    assert "the gain of k = 16 − k = 1 is +120 [+30, +210]" in answer and "k = 4 − k = 1 is" not in answer
    section = study_section([], {}, {}, rows)
    assert "**Between arms**" in section
    assert "| rho | cap1300 − cap1300_rho1 (ρ = 0 − ρ = 1) | 2 − 2 | +150 [+60, +240] | 0.01 | **yes** |" in section
