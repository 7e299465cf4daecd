"""Ratings tables, verdicts, the figure and the report, from hand-made game records."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from transcend_pipeline.evaluation import (
    TEMPERATURES,
    diversity_section,
    diversity_table,
    markdown_report,
    plot_transcendence,
    ratings_table,
    verdict,
)
from transcend_pipeline.ratings import pooled_rating


def game(
    score: float,
    *,
    player: str = "model",
    kind: str = "model",
    temperature: float | None = 0.1,
    opponent: str = "L1",
    opponent_rating: float | None = 1500.0,
    termination: str | None = None,
    illegal_mass: float | None = None,
) -> dict:
    """A game row as `GameRecord.as_row()` gives it, with only the fields the ratings read."""
    return {
        "player": player,
        "player_kind": kind,
        "temperature": temperature,
        "opponent": opponent,
        "opponent_rating": opponent_rating,
        "score": score,
        "termination": termination or ("threefold" if score == 0.5 else "checkmate"),
        "tiebreak_moves": 0,
        "illegal_mass": illegal_mass,
    }


def test_even_scores_against_one_opponent_rate_at_its_rating():
    records = [game(1.0)] * 10 + [game(0.0)] * 10 + [game(0.5, termination="ply_cap")] * 4
    (row,) = ratings_table(records, experiment="cap1000")
    assert row["rating"] == pytest.approx(1500.0, abs=1e-6)
    assert row["low"] < 1500.0 < row["high"]
    assert row["high"] - 1500.0 == pytest.approx(1500.0 - row["low"])
    assert (row["games"], row["wins"], row["draws"], row["losses"]) == (24, 10, 4, 10)
    assert (row["repetition_draws"], row["ply_cap_draws"]) == (0, 4)
    assert row["experiment"] == "cap1000" and row["score"] == 0.5


def test_rows_are_per_player_and_temperature_and_match_the_pooled_rating():
    records = [
        *(game(s, opponent="L1", opponent_rating=1554.0) for s in (1, 1, 0.5, 0)),
        *(game(s, opponent="L3", opponent_rating=1867.0) for s in (1, 0, 0, 0.5)),
        *(game(s, temperature=1.0) for s in (0, 0, 1)),
        *(game(s, player="consensus", kind="consensus", temperature=None) for s in (1, 1, 0)),
        game(1.0, opponent="clone", opponent_rating=None),  # unrated opponent: no information on the scale
    ]
    rows = {(row["player"], row["temperature"]): row for row in ratings_table(records)}
    assert set(rows) == {("model", 0.1), ("model", 1.0), ("consensus", None)}
    cell = rows["model", 0.1]
    expected = pooled_rating([1554.0] * 4 + [1867.0] * 4, [1, 1, 0.5, 0, 1, 0, 0, 0.5])
    assert (cell["rating"], cell["low"], cell["high"]) == pytest.approx((expected.rating, expected.low, expected.high))
    assert cell["games"] == 8 and cell["opponents"] == 2 and cell["repetition_draws"] == 2


def test_all_wins_stay_finite_and_above_the_opponent():
    (row,) = ratings_table([game(1.0)] * 20)
    assert math.isfinite(row["rating"]) and row["low"] > 1500.0
    (row,) = ratings_table([game(0.0)] * 20)
    assert math.isfinite(row["rating"]) and row["high"] < 1500.0


def test_glicko2_uses_the_prior_it_is_given():
    records = [game(1.0), game(0.0)] * 5
    (row,) = ratings_table(records, method="glicko2", prior=(1500.0, 500.0))
    expected = pooled_rating([1500.0] * 10, [1.0, 0.0] * 5, method="glicko2", prior=(1500.0, 500.0))
    assert row["rating"] == pytest.approx(expected.rating) and row["high"] == pytest.approx(expected.high)
    assert row["method"] == "glicko2"


def test_illegal_mass_is_averaged_over_games_that_report_it():
    rows = ratings_table([game(1.0, illegal_mass=0.2), game(0.0, illegal_mass=0.4), game(0.5)])
    assert rows[0]["illegal_mass_per_game"] == pytest.approx(0.3)
    assert ratings_table([game(1.0)])[0]["illegal_mass_per_game"] is None


def rating_row(temperature: float, rating: float, half_width: float = 50.0, kind: str = "model") -> dict:
    return {
        "experiment": "cap1000",
        "player": "model" if kind == "model" else kind,
        "kind": kind,
        "temperature": temperature,
        "rating": rating,
        "low": rating - half_width,
        "high": rating + half_width,
        "games": 100,
    }


def test_verdict_picks_the_best_temperature_and_needs_its_interval_above_the_cap():
    rows = [rating_row(0.001, 1100), rating_row(0.1, 1180), rating_row(1.0, 900), rating_row(0.0, 1500, kind="clone")]
    result = verdict(rows, cap=1000)
    assert result.best_temperature == 0.1 and result.rating == 1180
    assert result.transcends and result.bar == 1000 and result.as_row()["margin"] == pytest.approx(130)
    assert not verdict([rating_row(0.1, 1040)], cap=1000).transcends  # low end 990: the band reaches the cap


def test_on_panel_data_the_bar_is_the_best_player_when_above_the_cap():
    rows = [rating_row(0.01, 1180)]
    assert not verdict(rows, cap=1000, best_player_rating=1150).transcends
    assert verdict(rows, cap=1000, best_player_rating=1100).transcends
    assert verdict(rows, cap=1000, best_player_rating=900).bar == 1000


def test_verdict_refuses_rows_it_cannot_judge():
    with pytest.raises(ValueError):
        verdict([rating_row(0.1, 1200, kind="clone")], cap=1000)
    with pytest.raises(ValueError):
        verdict([rating_row(0.1, 1200), {**rating_row(0.3, 1200), "player": "other"}], cap=1000)


def test_figure_and_report_are_written(tmp_path: Path):
    rows = [rating_row(t, 1000 + 300 * math.exp(-t), 80) for t in TEMPERATURES]
    rows += [{**row, "experiment": "cap1500"} for row in rows]
    verdicts = [verdict(rows[:8], cap=1000, best_player_rating=1100), verdict(rows[8:], cap=1500)]
    path = plot_transcendence(rows, verdicts, tmp_path / "reports" / "transcendence.png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and path.stat().st_size > 10_000
    table_rows = [
        {
            **row,
            "wins": 1,
            "draws": 2,
            "losses": 3,
            "repetition_draws": 1,
            "ply_cap_draws": 0,
            "illegal_mass_per_game": None,
        }
        for row in rows
    ]
    report = markdown_report(verdicts, table_rows, path)
    assert "| cap1000 | 1000 | 1100 | 0.001 |" in report and "**yes**" in report
    assert "| cap1500 | 1500 | — |" in report and "| no |" in report
    assert report.count("\n| cap1500 | model | model |") == len(TEMPERATURES)
    assert "![rating against temperature](transcendence.png)" in report


def test_the_diversity_section_puts_each_bucket_beside_its_rating_and_the_best_players_argmax():
    full = [rating_row(0.1, 1600), rating_row(0.0, 1450, kind="clone")]
    clones = [{**row, "experiment": "clones"} for row in (rating_row(0.001, 1440), rating_row(0.0, 1460, kind="clone"))]
    verdicts = [verdict(full, cap=1300), verdict(clones, cap=1300)]
    diversity = {
        "cap1000": {"games": 6000, "players": 26, "top_player_share": 0.1, "player_entropy": 0.98},
        "clones": {"games": 6000, "players": 1, "top_player_share": 1.0, "player_entropy": 0.0},
    }
    section = diversity_section(
        verdicts, full + clones, diversity, {"cap1000": "full bucket", "clones": "clones of one player"}
    )
    lines = section.splitlines()
    full_line = next(line for line in lines if line.startswith("| cap1000 |"))
    clone_line = next(line for line in lines if line.startswith("| clones |"))
    assert (
        "| full bucket | 6000 | 26 | 0.100 | 0.980 | — | 0.1 | 1600 [1550, 1650] | 1300 | 1450 [1400, 1500] |"
        in full_line
    )
    assert "| clones of one player | 6000 | 1 | 1.000 | 0.000 | — | 0.001 | 1440 [1390, 1490] |" in clone_line
    assert clone_line.endswith("| 1460 [1410, 1510] | **yes** |")

    table = diversity_table({"clones": {**diversity["clones"], "top_player": "p0"}, "full bucket": {}}).splitlines()
    assert table[0] == "| bucket | top_player | games | players | top_player_share | player_entropy | opening_entropy |"
    assert table[2] == "| clones | p0 | 6000 | 1 | 1.000 | 0.000 | — |"
    assert table[3] == "| full bucket | — | — | — | — | — | — |"
