"""The verdict from simulated tournaments with known strengths: one fit, differences with corrected intervals, the
temperature chosen before it is tested, the figure and the report."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from transcend_pipeline.evaluation import (
    BASELINE,
    CONFIRM,
    LADDER,
    SWEEP,
    GainContrast,
    beside_the_paper,
    best_scoring_temperature,
    fit_games,
    markdown_report,
    method_text,
    model_free_fit,
    per_opponent_rows,
    plot_transcendence,
    ratings_rows,
    verdict_rows,
    verdict_table,
)
from transcend_pipeline.ladder import Bars, Member, clone_name, consensus_name, panel_bars
from transcend_pipeline.play import Rules
from transcend_pipeline.ratings import expected_score, fit_joint

SCALE = 1.5
#: True strengths in Elo of odds (the fit reports them stretched by SCALE around the reference).
LADDER_ELO = {"weak": -300.0, "low": -150.0, "ref": 0.0, "best": 100.0, "high": 250.0, "top": 450.0}


def ladder(cap: int = 1300) -> list[Member]:
    written = {name: 1500 + SCALE * elo for name, elo in LADDER_ELO.items()}
    return [
        Member(
            name,
            "panel",
            written[name],
            player_index=i,
            reference=name == "ref",
            top_of=(cap,) if name == "best" else (),
        )
        for i, name in enumerate(LADDER_ELO)
    ]


def games(
    rng: np.random.Generator, player: str, elo: float, n_per_opponent: int, *, kind: str, phase: str, **about
) -> list[dict]:
    """`player` (true strength `elo`) against every ladder member but itself, colours alternating, draws common
    between equals."""
    rows = []
    for opponent, opponent_elo in LADDER_ELO.items():
        if opponent == player:
            continue
        p = float(expected_score(elo, opponent_elo))
        for g in range(n_per_opponent):
            draw = 0.3 * 4 * p * (1 - p)
            u = rng.random()
            score = 1.0 if u < p - draw / 2 else 0.5 if u < p + draw / 2 else 0.0
            white, black = (player, opponent) if g % 2 == 0 else (opponent, player)
            white_score = score if g % 2 == 0 else 1 - score
            rows.append(
                {
                    "player": player,
                    "player_kind": kind,
                    "opponent": opponent,
                    "opponent_kind": "panel",
                    "white": white,
                    "black": black,
                    "result": {1.0: "1-0", 0.0: "0-1"}.get(white_score, "1/2-1/2"),
                    "score": score,
                    "termination": "checkmate" if score != 0.5 else "threefold",
                    "phase": phase,
                    "temperature": about.get("temperature"),
                    "experiment": about.get("experiment"),
                    "cap": about.get("cap"),
                    "temperature_choice": about.get("choice"),
                }
            )
    return rows


def tournament(model_elo: float, *, seed: int = 0, sweep_elo: float | None = None) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    names = list(LADDER_ELO)
    for i, a in enumerate(names):  # the ladder's round robin
        for b in names[i + 1 :]:
            rows += [r for r in games(rng, a, LADDER_ELO[a], 8, kind="panel", phase=LADDER) if r["opponent"] == b]
    rows += games(rng, "best", LADDER_ELO["best"], 80, kind="best_player", phase=BASELINE, cap=1300)
    rows += games(rng, clone_name("best"), 150.0, 80, kind="clone", phase=BASELINE, cap=1300)
    rows += games(rng, consensus_name(1300), 300.0, 80, kind="consensus", phase=BASELINE, cap=1300)
    for temperature, elo in ((0.001, model_elo if sweep_elo is None else sweep_elo), (1.0, model_elo - 300)):
        rows += games(
            rng,
            f"m τ={temperature:g}",
            elo,
            20,
            kind="model",
            phase=SWEEP,
            experiment="m",
            cap=1300,
            temperature=temperature,
        )
    rows += games(
        rng,
        "m τ=0.001 (confirm)",
        model_elo,
        80,
        kind="model",
        phase=CONFIRM,
        experiment="m",
        cap=1300,
        temperature=0.001,
        choice="sweep",
    )
    return rows


def bars(members: list, source: str) -> Bars:
    return panel_bars(members, 1300) if source == "panel" else Bars(1300)


def verdict(rows: list[dict], *, source: str = "panel") -> dict:
    members = ladder()
    fit = fit_games(rows, members, scale=SCALE)
    (row,) = verdict_rows(
        fit, ratings_rows(fit, rows, members), members, {"m": bars(members, source)}, source=source
    ).rows
    return row


def test_a_model_well_above_the_best_expert_transcends_with_the_right_difference():
    row = verdict(tournament(model_elo=350.0))
    assert row["bar_kind"] == "best_expert" and row["bar"] == "best"
    truth = SCALE * (350.0 - LADDER_ELO["best"])
    assert row["diff_bar_low"] < truth < row["diff_bar_high"]
    assert row["diff_bar_low"] > 0 and row["transcends"]
    assert row["claims"] == 2 and row["level_bar"] == pytest.approx(0.975)  # Holm: the smaller p-value's step
    assert row["clone"] == clone_name("best") and row["beats_clone"]
    assert row["confirm_games"] == 6 * 80 and row["confirm_temperature"] == 0.001
    assert row["temperature_choice"] == "sweep"
    assert row["diff_consensus_low"] < SCALE * (350.0 - 300.0) < row["diff_consensus_high"]


def test_a_model_at_the_best_experts_level_is_rarely_declared_to_transcend():
    declared = [verdict(tournament(model_elo=LADDER_ELO["best"], seed=seed))["transcends"] for seed in range(40)]
    assert sum(declared) <= 2  # one-sided 2.5%, Holm-corrected: about 1 in 40 at most


def test_only_confirmatory_games_decide_even_when_the_sweep_looks_better():
    row = verdict(tournament(model_elo=LADDER_ELO["best"], sweep_elo=800.0))  # a sweep cell far above the bar
    assert not row["transcends"] and abs(row["diff_bar"]) < 150


def test_ratings_rows_put_the_reference_at_its_written_rating_and_mark_the_ladder():
    members = ladder()
    rows = tournament(model_elo=200.0)
    fit = fit_games(rows, members, scale=SCALE)
    by_player = {row["player"]: row for row in ratings_rows(fit, rows, members)}
    assert by_player["ref"]["rating"] == 1500.0 and by_player["ref"]["reference"]
    assert by_player["best"]["kind"] == "best_player" and by_player["best"]["in_ladder"]  # a baseline and a rung
    assert by_player["top"]["written_rating"] == pytest.approx(1500 + SCALE * 450)
    assert by_player["top"]["low"] < 1500 + SCALE * 450 < by_player["top"]["high"]
    confirm = by_player["m τ=0.001 (confirm)"]
    assert (confirm["phase"], confirm["temperature_choice"], confirm["games"]) == (CONFIRM, "sweep", 480)
    cells = per_opponent_rows(rows)
    assert sum(c["wins"] + c["draws"] + c["losses"] for c in cells) == len(rows)


def test_a_reference_that_lost_every_game_hands_the_scale_to_the_nearest_finite_member():
    """The Lichess case: the lowest skill level, the declared reference, loses all its ladder games and the models
    lose all theirs. Its rating is infinite, so the member whose written rating is nearest ("low", then "ref") fixes
    the scale at its own written rating, and the report says which and why."""
    members = [dataclasses.replace(member, reference=member.name == "weak") for member in ladder()]
    rows = [row for row in tournament(model_elo=350.0) if row["phase"] == LADDER]
    rows += [row for row in tournament(model_elo=-900.0, seed=1) if row["phase"] == CONFIRM]
    for row in rows:  # the model loses every game, the weak member every other one
        loser = next((name for name in ("m τ=0.001 (confirm)", "weak") if name in (row["white"], row["black"])), None)
        if loser is not None:
            row["result"] = "0-1" if row["white"] == loser else "1-0"
            row["score"] = 0.0 if row["player"] == loser else 1.0
    fit = fit_games(rows, members, scale=SCALE)
    assert fit.reference == "low"  # written 1275: nearer "weak"'s 1050 than "ref"'s 1500
    by_player = {row["player"]: row for row in ratings_rows(fit, rows, members)}
    assert by_player["weak"]["rating"] == -math.inf and not by_player["weak"]["reference"]
    assert by_player["low"]["rating"] == by_player["low"]["written_rating"] and by_player["low"]["reference"]
    method = method_text([], members, reference=fit.reference, scale=SCALE, rules=Rules(), book=8)
    assert "fixed by low at its written 1275" in method and "not by weak, the declared reference" in method
    assert "not by" not in method_text([], members, reference="weak", scale=SCALE, rules=Rules(), book=8)


def test_a_perfect_confirmation_gives_a_one_sided_bound():
    rows = tournament(model_elo=350.0)
    for row in rows:
        if row["phase"] == CONFIRM:
            row["score"] = 1.0
            row["result"] = "1-0" if row["white"] == row["player"] else "0-1"
    result = verdict(rows)
    assert result["rating"] == math.inf and result["high"] == math.inf and math.isfinite(result["low"])
    assert result["diff_bar"] == math.inf and result["diff_bar_low"] > 0 and result["transcends"]
    assert "∞" in verdict_table([result])


def test_each_main_cap_is_set_beside_the_papers_finding():
    row = {**verdict(tournament(model_elo=350.0)), "experiment": "cap1500", "cap": 1500}
    text = beside_the_paper([row, {**row, "experiment": "cap1500_clones"}])
    assert "does not transcend" in text and "| 1500 |" in text and text.count("| 1500 |") == 1
    assert text.rstrip().endswith("| transcends |")


def test_the_figure_draws_a_confirmation_lost_in_every_game_at_its_bound(tmp_path: Path):
    rows = tournament(model_elo=0.0)
    for row in rows:
        if row["phase"] == CONFIRM:
            row["score"] = 0.0
            row["result"] = "0-1" if row["white"] == row["player"] else "1-0"
    members = ladder()
    fit = fit_games(rows, members, scale=SCALE)
    ratings = ratings_rows(fit, rows, members)
    verdicts = verdict_rows(fit, ratings, members, {"m": panel_bars(members, 1300)}, source="panel").rows
    assert verdicts[0]["rating"] == -math.inf and math.isfinite(verdicts[0]["high"]) and not verdicts[0]["transcends"]
    assert plot_transcendence(ratings, verdicts, tmp_path / "t.png").stat().st_size > 10_000


def test_an_arm_is_measured_against_its_own_best_expert_and_clone():
    """A diversity arm's model faces its own experts (here an arm whose best expert is 200 Elo of odds stronger than
    the bucket's), not the bucket's: the same model transcends the bucket's bar and not the arm's."""
    rng = np.random.default_rng(5)
    rows = tournament(model_elo=250.0)
    rows += games(rng, "best~rho1", 300.0, 80, kind="best_player", phase=BASELINE, cap=1300)
    rows += games(rng, clone_name("best~rho1"), 320.0, 80, kind="clone", phase=BASELINE, cap=1300)
    members = ladder()
    fit = fit_games(rows, members, scale=SCALE)
    ratings = ratings_rows(fit, rows, members)
    arm = Bars(1300, ("best~rho1",), clone_name("best~rho1"))
    rows_by_bars = {
        name: verdict_rows(fit, ratings, members, {"m": bars}, source="panel").rows[0]
        for name, bars in (("bucket", panel_bars(members, 1300)), ("arm", arm))
    }
    assert rows_by_bars["bucket"]["bar"] == "best" and rows_by_bars["bucket"]["transcends"]
    assert rows_by_bars["arm"]["bar"] == "best~rho1" and rows_by_bars["arm"]["clone"] == clone_name("best~rho1")
    assert rows_by_bars["arm"]["diff_bar_low"] < SCALE * (250.0 - 300.0) < rows_by_bars["arm"]["diff_bar_high"]
    assert not rows_by_bars["arm"]["transcends"] and rows_by_bars["arm"]["diff_consensus"] is None


def test_the_best_expert_is_picked_by_the_fit_it_is_given_and_the_report_gives_one_without_models():
    """Two heads of one bucket: which is the bar is decided by `expert_fit` (the report's: the games no model
    played), not by the joint fit, so a model's own games cannot change it."""
    members = [dataclasses.replace(m, top_of=(1300,) if m.name in ("best", "high") else ()) for m in ladder()]
    rows = tournament(model_elo=350.0)
    fit = fit_games(rows, members, scale=SCALE)
    ratings = ratings_rows(fit, rows, members)
    bars = {"m": Bars(1300, ("high", "best"), clone_name("best"))}
    joint = verdict_rows(fit, ratings, members, bars, source="panel").rows[0]
    assert joint["bar"] == "high"  # the stronger head (true 250 against 100)
    best_wins = fit_joint(["best", "high", "best"], ["high", "best", "high"], [1.0, 0.0, 0.5], reference="best")
    chosen = verdict_rows(fit, ratings, members, bars, source="panel", expert_fit=best_wins).rows[0]
    assert chosen["bar"] == "best" and chosen["diff_bar"] > joint["diff_bar"]  # the bar's rating is the joint fit's
    model_free = model_free_fit(rows, members, scale=SCALE)
    assert not any(name.startswith("m τ") for name in model_free.players)
    assert set(model_free.players) == {name for name in fit.players if not name.startswith("m τ")}


def test_a_claim_between_arms_is_one_more_claim_of_the_family():
    """The diversity study's claim: arm m's gain over its clone against arm m2's (m2's own clone), one contrast of
    the joint fit, Holm-corrected with every other claim; one not wholly evaluated is not claimed."""
    rng = np.random.default_rng(9)
    rows = tournament(model_elo=250.0)  # m: 100 Elo of odds above the bucket's clone (150)
    rows += games(rng, "best~rho1", 100.0, 80, kind="best_player", phase=BASELINE, cap=1300)
    rows += games(rng, clone_name("best~rho1"), 150.0, 80, kind="clone", phase=BASELINE, cap=1300)
    rows += games(
        rng, "m2 τ=0.001 (confirm)", 150.0, 80, kind="model", phase=CONFIRM, experiment="m2", cap=1300,
        temperature=0.001, choice="declared",
    )  # fmt: skip
    members = ladder()
    fit = fit_games(rows, members, scale=SCALE)
    ratings = ratings_rows(fit, rows, members)
    bars = {"m": panel_bars(members, 1300), "m2": Bars(1300, ("best~rho1",), clone_name("best~rho1"))}
    contrast = GainContrast("rho", "m", 0.0, "m2", 1.0, ("m",), ("m2",))
    unevaluated = GainContrast("rho", "m3", 0.5, "m2", 1.0, ("m3",), ("m2",))
    answer = verdict_rows(fit, ratings, members, bars, source="panel", contrasts=[contrast, unevaluated])
    (between,) = answer.contrasts
    rating = {row["player"]: row["rating"] for row in ratings}
    by_experiment = {row["experiment"]: row for row in answer.rows}
    expected = by_experiment["m"]["diff_clone"] - by_experiment["m2"]["diff_clone"]
    assert between["diff"] == pytest.approx(expected, abs=1e-6)
    assert between["diff"] == pytest.approx(
        rating["m τ=0.001 (confirm)"] - rating[clone_name("best")]
        - rating["m2 τ=0.001 (confirm)"] + rating[clone_name("best~rho1")], abs=1e-6
    )  # fmt: skip
    assert between["low"] < SCALE * 100.0 < between["high"] and between["low"] < expected < between["high"]
    assert (between["arm"], between["base"], between["seeds"], between["base_seeds"]) == ("m", "m2", 1, 1)
    assert between["claims"] == 5 and {row["claims"] for row in answer.rows} == {5}  # 2 per experiment, 1 between
    assert between["p_holm"] >= between["p"] and between["larger"] == (between["p_holm"] < 0.025)
    without = verdict_rows(fit, ratings, members, bars, source="panel")
    assert without.contrasts == [] and {row["claims"] for row in without.rows} == {4}


def test_lichess_verdict_is_the_model_minus_the_cap():
    rows = tournament(model_elo=350.0)
    members = ladder()
    fit = fit_games(rows, members, scale=SCALE)
    ratings = ratings_rows(fit, rows, members)
    (high,) = verdict_rows(fit, ratings, members, {"m": Bars(1300)}, source="lichess").rows
    (low,) = verdict_rows(fit, ratings, members, {"m": Bars(2100)}, source="lichess").rows
    confirm = next(r for r in ratings if r["phase"] == CONFIRM)
    assert high["bar_kind"] == "cap" and high["claims"] == 1 and high["clone"] is None
    assert high["diff_bar"] == pytest.approx(confirm["rating"] - 1300)
    assert high["transcends"] and high["p_bar"] < 0.001
    assert not low["transcends"] and low["p_bar"] > 0.5
    assert (high["diff_bar_low"] > 0) == high["transcends"]


def test_the_sweep_picks_the_best_mean_score_and_ties_go_to_the_lower_temperature():
    rows = [{"temperature": t, "score": s} for t, s in ((0.1, 1.0), (0.1, 0.0), (0.01, 0.5), (0.01, 0.5), (1.0, 0.0))]
    assert best_scoring_temperature(rows) == 0.01
    rows.append({"temperature": 0.3, "score": 1.0})
    assert best_scoring_temperature(rows) == 0.3
    with pytest.raises(ValueError):
        best_scoring_temperature([])


def test_report_and_figure(tmp_path: Path):
    members = ladder()
    rows = tournament(model_elo=350.0)
    fit = fit_games(rows, members, scale=SCALE)
    ratings = ratings_rows(fit, rows, members)
    verdicts = verdict_rows(fit, ratings, members, {"m": panel_bars(members, 1300)}, source="panel").rows
    figure = plot_transcendence(ratings, verdicts, tmp_path / "t.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    method = method_text(
        verdicts,
        members,
        reference=fit.reference,
        scale=SCALE,
        rules=Rules(max_plies=160, resign_cp=600, adjudicate_cp=300),
        book=50,
    )
    report = markdown_report(verdicts, ratings, per_opponent_rows(rows), method, figure, ["## Extra\n"])
    assert "| m | 1300 | 0.001 (sweep) | 480 |" in report
    assert "fixed by ref at its written 1500" in report and "2 claims" in report
    assert "| cap | paper (Zhang et al. 2024) |" in report  # no main cap in this toy run: the header only
    assert "ref (reference)" in report and "## Extra" in report and "## Wins-draws-losses per opponent" in report
