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
    glicko2_update,
    pooled_rating,
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


def test_glicko2_matches_glickmans_worked_example() -> None:
    rating, rd, vol = glicko2_update(1500, 200, 0.06, [(1400, 30), (1550, 100), (1700, 300)], [1, 0, 0])
    assert rating == pytest.approx(1464.06, abs=0.02)  # the paper rounds intermediate values; exact is 1464.05
    assert rd == pytest.approx(151.52, abs=0.01)
    assert vol == pytest.approx(0.05999, abs=1e-5)


def test_glicko2_idle_period_only_widens_rd() -> None:
    rating, rd, vol = glicko2_update(1500, 200, 0.06, [], [])
    assert (rating, vol) == (1500, 0.06)
    assert rd == pytest.approx(173.7178 * math.hypot(200 / 173.7178, 0.06))


def test_all_wins_rate_far_above_the_strongest_opponent_with_finite_interval() -> None:
    for method in ("bradley_terry", "glicko2"):
        estimate = pooled_rating(POOL, np.ones(POOL.size), method=method)
        assert estimate.rating > POOL.max() + 150, method
        assert math.isfinite(estimate.low) and math.isfinite(estimate.high)
        assert estimate.low < estimate.rating < estimate.high
        assert (estimate.games, estimate.wins, estimate.draws, estimate.losses) == (12, 12, 0, 0)


def test_all_losses_mirror_all_wins() -> None:
    wins = pooled_rating(POOL, np.ones(POOL.size))
    losses = pooled_rating(POOL, np.zeros(POOL.size))
    assert losses.rating - 1500 == pytest.approx(-(wins.rating - 1500))
    assert losses.high - 1500 == pytest.approx(-(wins.low - 1500))
    assert losses.losses == 12


def test_even_score_against_a_1500_pool_is_1500() -> None:
    opponents, scores = np.full(40, 1500.0), np.array([1.0, 0.0, 0.5, 0.5] * 10)
    for method in ("bradley_terry", "glicko2"):
        estimate = pooled_rating(opponents, scores, method=method)
        assert estimate.rating == pytest.approx(1500, abs=1), method
        assert (estimate.wins, estimate.draws, estimate.losses) == (10, 20, 10)


def test_bradley_terry_without_prior_is_the_hand_computed_mle() -> None:
    # two wins and a loss against 1500: score 2/3 -> 1500 + 400·log10(2); information 3·p(1-p)/173.72²
    estimate = pooled_rating([1500, 1500, 1500], [1, 1, 0], prior=(1500, math.inf))
    assert estimate.rating == pytest.approx(1500 + 400 * math.log10(2))
    half_width = 1.959964 * 173.7178 / math.sqrt(3 * (2 / 3) * (1 / 3))
    assert estimate.high - estimate.rating == pytest.approx(half_width, rel=1e-5)
    with pytest.raises(ValueError, match="no finite"):
        pooled_rating([1500, 1600], [1, 1], prior=(1500, math.inf))


def test_interval_shrinks_as_games_grow() -> None:
    rng = np.random.default_rng(1)
    opponents = rng.uniform(1300, 1700, 50)
    scores = simulate_scores(rng, expected_score(1550, opponents), draw_rate=0.2)
    widths = []
    for copies in (1, 4, 16):
        estimate = pooled_rating(np.tile(opponents, copies), np.tile(scores, copies))
        widths.append(estimate.high - estimate.low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4, rel=0.05)  # 1/√games


def test_methods_agree_on_a_large_balanced_sample() -> None:
    rng = np.random.default_rng(2)
    opponents = rng.uniform(1300, 1700, 4000)
    scores = simulate_scores(rng, expected_score(1500, opponents), draw_rate=0.3)
    bradley_terry = pooled_rating(opponents, scores, method="bradley_terry")
    glicko2 = pooled_rating(opponents, scores, method="glicko2")
    assert bradley_terry.rating == pytest.approx(1500, abs=25)
    assert glicko2.rating == pytest.approx(bradley_terry.rating, abs=3)
    assert glicko2.high - glicko2.low == pytest.approx(bradley_terry.high - bradley_terry.low, rel=0.05)


def test_pooled_rating_rejects_malformed_input() -> None:
    with pytest.raises(ValueError, match="one score per game"):
        pooled_rating([1500, 1600], [1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pooled_rating([1500], [2])
    with pytest.raises(ValueError, match="method"):
        pooled_rating([1500], [1], method="elo")  # type: ignore[arg-type]


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
