"""Rating maths against hand-computed cases, Glickman's worked example and simulated pools."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from transcend_pipeline.ratings import (
    elo_difference_interval,
    expected_score,
    fit_pool_ratings,
    win_probability,
)

POOL = np.repeat([1400.0, 1500.0, 1600.0], 4)


def simulate_scores(rng: np.random.Generator, p: np.ndarray, draw_rate: float) -> np.ndarray:
    """Scores whose expectation is `p`, with draws most common between equals (`draw_rate` at p = 0.5)."""
    draws = draw_rate * 4 * p * (1 - p)
    wins = p - draws / 2
    u = rng.random(p.size)
    return np.where(u < wins, 1.0, np.where(u < wins + draws, 0.5, 0.0))


def test_expected_score_and_lichess_win_probability() -> None:
    assert expected_score(1900, 1500) == pytest.approx(10 / 11)
    assert expected_score([1500, 1300], [1500, 1500]) == pytest.approx([0.5, 1 / (1 + 10**0.5)])
    assert expected_score(1234, 1500) + expected_score(1500, 1234) == pytest.approx(1.0)
    assert win_probability(0) == 0.5
    assert win_probability(100) == pytest.approx(1 / (1 + math.exp(-0.368208)))
    assert win_probability([-300, 300]).sum() == pytest.approx(1.0)


def simulate_pool(rng: np.random.Generator, strengths: np.ndarray, games: int) -> tuple[np.ndarray, ...]:
    white = rng.integers(0, strengths.size, games)
    black = (white + rng.integers(1, strengths.size, games)) % strengths.size
    return white, black, simulate_scores(rng, expected_score(strengths[white], strengths[black]), draw_rate=0.2)


def test_pool_fit_recovers_known_strengths_around_the_anchor() -> None:
    rng = np.random.default_rng(3)
    strengths = rng.permutation(np.linspace(900, 1800, 24))
    white, black, scores = simulate_pool(rng, strengths, 20_000)
    ratings = fit_pool_ratings(white, black, scores, 24, anchor_median=1500)
    assert scipy.stats.spearmanr(ratings, strengths).statistic > 0.95
    assert np.median(ratings) == pytest.approx(1500)
    slope = np.polyfit(strengths, ratings, 1)[0]
    assert slope == pytest.approx(1.0, abs=0.1)  # the spread, not only the order, is recovered
    shifted = fit_pool_ratings(white, black, scores, 24, anchor_median=2000)
    assert shifted - ratings == pytest.approx(np.full(24, 500.0))


def test_pool_fit_keeps_sparse_players_finite() -> None:
    # player 2 won its only game, player 3 never played
    ratings = fit_pool_ratings([0, 1, 0, 2], [1, 0, 1, 0], [1.0, 0.0, 0.5, 1.0], 4, anchor_median=1500)
    assert np.all(np.isfinite(ratings))
    assert ratings[2] > ratings[0] > ratings[1]
    assert np.median(ratings) == pytest.approx(1500)
    with pytest.raises(ValueError, match="player ids"):
        fit_pool_ratings([0], [4], [1.0], 4)


def test_pool_fit_handles_100k_games() -> None:
    rng = np.random.default_rng(4)
    strengths = np.linspace(1000, 2000, 24)
    white, black, scores = simulate_pool(rng, strengths, 100_000)
    ratings = fit_pool_ratings(white, black, scores, 24)
    assert np.abs((ratings - ratings.mean()) - (strengths - strengths.mean())).max() < 20


def test_elo_difference_of_even_and_three_quarter_scores() -> None:
    elo, low, high = elo_difference_interval(40, 20, 40)
    assert elo == 0 and low == pytest.approx(-high)
    elo, low, high = elo_difference_interval(150, 0, 50)
    assert elo == pytest.approx(400 * math.log10(3))  # +190.85
    assert low < elo < high
    _, low_drawish, high_drawish = elo_difference_interval(100, 100, 0)  # the same 75%, less variance
    assert low < low_drawish and high_drawish < high


def test_elo_difference_when_every_game_was_won() -> None:
    elo, low, high = elo_difference_interval(30, 0, 0)
    assert elo == high == math.inf
    assert 300 < low < 400  # Wilson's end: 30/(30+1.96²) = 0.8865 -> +358
    assert elo_difference_interval(0, 0, 30)[1] == -math.inf
    with pytest.raises(ValueError):
        elo_difference_interval(0, 0, 0)


def test_elo_difference_interval_covers_the_truth_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(5)
    win, draw = 0.5, 0.3  # score 0.65
    truth = 400 * math.log10(0.65 / 0.35)
    results = rng.multinomial(300, [win, draw, 1 - win - draw], size=2000)
    covered = [low <= truth <= high for _, low, high in (elo_difference_interval(*map(int, r)) for r in results)]
    assert 0.93 < np.mean(covered) < 0.97
