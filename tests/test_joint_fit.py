"""The joint Bradley–Terry fit: hand-computed cases, agreement with the pool fit, simulated coverage, perfect scores."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from transcend_pipeline.ratings import (
    ELO_PER_NATURAL_UNIT,
    expected_score,
    fit_joint,
    fit_pool_ratings,
    holm,
    holm_levels,
)

CHI2_95 = float(scipy.stats.chi2.ppf(0.95, 1))
LADDER = np.linspace(1200.0, 1800.0, 8)  # true Elo of the ladder; "L3" is the reference
LADDER_NAMES = [f"L{k}" for k in range(LADDER.size)]


def simulate_scores(rng: np.random.Generator, p: np.ndarray, draw_rate: float) -> np.ndarray:
    """Scores whose expectation is `p`, with draws most common between equals (`draw_rate` at p = 0.5)."""
    draws = draw_rate * 4 * p * (1 - p)
    wins = p - draws / 2
    u = rng.random(p.size)
    return np.where(u < wins, 1.0, np.where(u < wins + draws, 0.5, 0.0))


def evaluation_games(model: float, best: float, per_pair: int = 4, extra: int = 100) -> tuple[list[str], list[str]]:
    """The pairings of an evaluation: the ladder's round robin, then `extra` games each for the model and the best
    player spread evenly over the ladder. Returns (white, black) names; strengths are looked up by name."""
    white, black = [], []
    for i in range(LADDER.size):
        for j in range(i + 1, LADDER.size):
            white += [LADDER_NAMES[i]] * per_pair
            black += [LADDER_NAMES[j]] * per_pair
    for player in ("model", "best"):
        rungs = np.arange(extra) % LADDER.size
        white += [player] * extra
        black += [LADDER_NAMES[k] for k in rungs]
    return white, black


def strengths(model: float, best: float) -> dict[str, float]:
    return {**dict(zip(LADDER_NAMES, LADDER, strict=True)), "model": model, "best": best}


def play(
    rng: np.random.Generator, white: list[str], black: list[str], truth: dict[str, float], draw_rate: float
) -> np.ndarray:
    """One simulated result per pairing."""
    p = expected_score([truth[w] for w in white], [truth[b] for b in black])
    return simulate_scores(rng, p, draw_rate)


def test_two_players_match_a_hand_computed_profile_likelihood() -> None:
    white, black, scores = ["A"] * 40, ["B"] * 40, [1.0] * 30 + [0.0] * 10
    fit = fit_joint(white, black, scores, reference="B")
    a = fit.rating("A")
    assert a.rating == pytest.approx(1500 + 400 * math.log10(3))
    assert (a.games, a.wins, a.draws, a.losses) == (40, 30, 0, 10)
    assert fit.rating("B") == type(a)("B", 1500.0, 1500.0, 1500.0, 40, 10, 0, 30)

    def log_likelihood(d: float) -> float:
        p = expected_score(d, 0.0)
        return 30 * math.log(p) + 10 * math.log(1 - p)

    # Pearson: 30 games with residual 0.25 and 10 with 0.75 at p = 0.75, on 40 - 1 degrees of freedom
    phi = (30 * 0.25**2 + 10 * 0.75**2) / (0.75 * 0.25) / 39
    assert fit.dispersion == pytest.approx(phi)
    best = log_likelihood(400 * math.log10(3))

    def excess(d: float) -> float:
        return 2 * (best - log_likelihood(d)) / phi - CHI2_95

    low = scipy.optimize.brentq(excess, -500, 400 * math.log10(3))
    high = scipy.optimize.brentq(excess, 400 * math.log10(3), 1500)
    assert (a.low, a.high) == pytest.approx((1500 + low, 1500 + high), abs=1e-4)
    difference = fit.difference("A", "B")
    assert (difference.estimate, difference.low, difference.high) == pytest.approx(
        (a.rating - 1500, low, high), abs=1e-4
    )
    p_value = scipy.stats.norm.sf(math.sqrt(2 * (best - log_likelihood(0.0)) / phi))
    assert difference.p_value == pytest.approx(p_value)
    assert fit.difference("B", "A").p_value == pytest.approx(1 - p_value)

    stretched = fit_joint(white, black, scores, reference="B", scale=1.5).rating("A")
    assert (stretched.rating, stretched.low, stretched.high) == pytest.approx(
        (1500 + 1.5 * (a.rating - 1500), 1500 + 1.5 * low, 1500 + 1.5 * high), abs=1e-4
    )
    assert fit_joint(white, black, scores, reference="B", scale=1.5).difference("A", "B").low == pytest.approx(
        1.5 * low, abs=1e-4
    )


def test_a_transitive_pool_recovers_its_strengths_and_agrees_with_the_pool_fit() -> None:
    rng = np.random.default_rng(7)
    truth = np.array([1100.0, 1350.0, 1500.0, 1620.0, 1900.0, 2050.0])
    i, j = np.triu_indices(truth.size, 1)
    i, j = np.repeat(i, 600), np.repeat(j, 600)
    flip = rng.random(i.size) < 0.5  # colours do not matter, but mix them anyway
    white, black = np.where(flip, i, j), np.where(flip, j, i)
    scores = simulate_scores(rng, expected_score(truth[white], truth[black]), 0.3)
    names = np.array([f"P{k}" for k in range(truth.size)])
    fit = fit_joint(list(names[white]), list(names[black]), scores, reference="P2", reference_rating=1500.0)
    fitted = {r.player: r for r in fit.ratings()}
    pool = fit_pool_ratings(white, black, scores, truth.size, prior_sd=1e6)
    for k, name in enumerate(names):
        rating = fitted[name]
        assert rating.rating == pytest.approx(pool[k] - pool[2] + 1500.0, abs=0.01)
        assert abs(rating.rating - truth[k]) < 40.0  # ~3.5 standard errors at 3000 games a player
        assert rating.low <= truth[k] <= rating.high
    assert [r.player for r in fit.ratings()] == fit.players
    assert fit.dispersion == pytest.approx(0.7, abs=0.05)  # draws at 0.3 between equals: Var = 0.7 p(1 - p)


def test_profile_intervals_cover_at_their_level_and_the_one_sided_test_holds_its_size() -> None:
    rng = np.random.default_rng(2024)
    white, black = evaluation_games(model=1550.0, best=1650.0)
    truth = strengths(1550.0, 1650.0)
    model_true = 1500.0 + truth["model"] - truth["L3"]
    covered_rating = covered_difference = 0
    runs = 400
    for _ in range(runs):
        fit = fit_joint(white, black, play(rng, white, black, truth, 0.3), reference="L3")
        rating = fit.rating("model")
        covered_rating += rating.low <= model_true <= rating.high
        difference = fit.difference("model", "best")
        covered_difference += difference.low <= -100.0 <= difference.high
    assert 0.93 <= covered_rating / runs <= 0.97
    assert 0.93 <= covered_difference / runs <= 0.97

    equal = strengths(1600.0, 1600.0)
    rejections = sum(
        fit_joint(white, black, play(rng, white, black, equal, 0.3), reference="L3").difference("model", "best").p_value
        < 0.025
        for _ in range(runs)
    )
    assert 0.01 <= rejections / runs <= 0.04


def test_a_perfect_score_is_infinite_with_a_one_sided_interval_beyond_a_near_perfect_one() -> None:
    rng = np.random.default_rng(3)
    white, black = evaluation_games(model=0.0, best=0.0, extra=0)
    scores = list(play(rng, white, black, strengths(0.0, 0.0), 0.3))
    opponents = [LADDER_NAMES[k % LADDER.size] for k in range(24)]
    white += ["perfect"] * 24 + ["near"] * 24
    black += opponents * 2
    scores += [1.0] * 24 + [1.0] * 23 + [0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_joint(white, black, scores, reference="L3")
        perfect, near = fit.rating("perfect"), fit.rating("near")
        versus = fit.difference("perfect", "near")
        below = fit.difference("near", "perfect")
    assert (perfect.rating, perfect.high) == (math.inf, math.inf)
    assert math.isfinite(perfect.low) and perfect.low > fit.rating("L7").rating
    assert (perfect.wins, perfect.losses) == (24, 0)
    assert math.isfinite(near.rating) and math.isfinite(near.high)
    assert near.low < perfect.low  # one more win can only raise the lower bound
    assert near.low < near.rating < near.high
    assert (versus.estimate, versus.high) == (math.inf, math.inf) and math.isfinite(versus.low)
    assert versus.p_value < 0.5
    assert (below.estimate, below.low) == (-math.inf, -math.inf)
    assert below.high == pytest.approx(-versus.low)
    assert below.p_value == pytest.approx(1 - versus.p_value)
    # the other ratings are the fit without the perfect player: its games add nothing at +inf
    without = fit_joint(
        white[:-48] + white[-24:], black[:-48] + black[-24:], scores[:-48] + scores[-24:], reference="L3"
    )
    assert fit.rating("near").rating == pytest.approx(without.rating("near").rating)


def test_a_perfect_score_against_the_reference_alone_has_a_closed_form_bound() -> None:
    white, black, scores = ["L0"] * 10 + ["L1"] * 10, ["L1"] * 10 + ["L2"] * 10, [1.0, 0.0] * 10
    fit = fit_joint([*white, *["P"] * 12], [*black, *["L1"] * 12], [*scores, *[1.0] * 12], reference="L1")
    # the profile at P = x is 12 log p(x) plus a fit of the rest that does not depend on x
    p_low = math.exp(-CHI2_95 * fit.dispersion / 24)
    assert fit.rating("P").low == pytest.approx(1500 + ELO_PER_NATURAL_UNIT * math.log(p_low / (1 - p_low)))


def test_layers_of_perfect_scores_are_peeled_one_after_the_other() -> None:
    """The paper's ladder against a weak model: L5 beats everyone, L3 everyone but L5; both are +inf, and the
    reference and the model are rated by their own games only."""
    white = ["L5"] * 8 + ["L5"] * 8 + ["L3"] * 8 + ["L3"] * 8 + ["L1"] * 10
    black = ["L3"] * 8 + ["L1"] * 8 + ["L1"] * 8 + ["model"] * 8 + ["model"] * 10
    scores = [1.0] * 32 + [1.0] * 7 + [0.0] * 3
    fit = fit_joint(white, black, scores, reference="L1", reference_rating=1554.0)
    l5, l3, model = fit.rating("L5"), fit.rating("L3"), fit.rating("model")
    assert (l5.rating, l3.rating) == (math.inf, math.inf) and math.isfinite(l3.low)
    assert model.rating == pytest.approx(1554.0 - 400 * math.log10(7 / 3))  # from its 3 of 10 against L1 alone
    assert math.isnan(fit.difference("L5", "L3").estimate)


def test_the_test_against_a_fixed_rating_agrees_with_the_interval() -> None:
    rng = np.random.default_rng(5)
    white, black = evaluation_games(model=1650.0, best=1500.0)
    scores = play(rng, white, black, strengths(1650.0, 1500.0), 0.3)
    fit = fit_joint(white, black, scores, reference="L3", reference_rating=1457.0, scale=1.5)
    rating = fit.rating("model")
    assert fit.p_value_above("model", rating.low) == pytest.approx(0.025, abs=1e-3)  # the 95% interval's ends
    assert fit.p_value_above("model", rating.high) == pytest.approx(0.975, abs=1e-3)
    assert fit.p_value_above("model", rating.rating) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="fixed"):
        fit.p_value_above("L3", 1500.0)


def test_a_contrast_of_four_players_covers_the_truth_and_reduces_to_a_difference() -> None:
    """One arm's gain over its clone against another's: (model − clone) − (model_b − clone_b), as the diversity
    study claims it; each of the four plays the ladder, none plays another."""
    rng = np.random.default_rng(17)
    arms = {"model": 1660.0, "clone": 1600.0, "model_b": 1550.0, "clone_b": 1550.0}  # true gains 60 and 0
    white, black = evaluation_games(model=0.0, best=0.0, extra=0)
    for player in arms:
        white += [player] * 200
        black += [LADDER_NAMES[k % LADDER.size] for k in range(200)]
    truth = {**dict(zip(LADDER_NAMES, LADDER, strict=True)), **arms}
    gain = {"model": 1.0, "clone": -1.0, "model_b": -1.0, "clone_b": 1.0}
    covered, runs = 0, 300
    for run in range(runs):
        fit = fit_joint(white, black, play(rng, white, black, truth, 0.3), reference="L3")
        contrast = fit.contrast(gain)
        covered += contrast.low <= 60.0 <= contrast.high
        if run == 0:
            ratings = {name: fit.rating(name).rating for name in arms}
            assert contrast.estimate == pytest.approx(
                ratings["model"] - ratings["clone"] - ratings["model_b"] + ratings["clone_b"]
            )
            assert (contrast.a, contrast.b) == ("model + clone_b", "clone + model_b")
            assert fit.contrast({"model": 1.0, "clone": -1.0}) == fit.difference("model", "clone")
            doubled = fit.contrast({name: 2.0 * w for name, w in gain.items()})
            assert (doubled.estimate, doubled.low, doubled.high) == pytest.approx(
                (2 * contrast.estimate, 2 * contrast.low, 2 * contrast.high), abs=1e-3
            )
            assert doubled.p_value == pytest.approx(contrast.p_value, abs=1e-9)
            # A contrast of four players' games is wider than either difference in it.
            assert (
                contrast.high - contrast.low
                > fit.difference("model", "clone").high - fit.difference("model", "clone").low
            )
    assert 0.92 <= covered / runs <= 0.98
    with pytest.raises(ValueError, match="sum to 0"):
        fit.contrast({"model": 1.0, "clone": -0.5})


def test_holm_adjusts_step_down_and_matches_its_interval_levels() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.3, 0.9]) == pytest.approx([1.0, 0.9, 1.0])
    assert holm([0.02]) == [0.02]
    assert holm_levels([0.02]) == [0.95]
    assert holm_levels([0.01, 0.04, 0.03, 0.005]) == pytest.approx([1 - 0.05 / 3, 0.95, 1 - 0.05 / 2, 1 - 0.05 / 4])


def test_a_reference_that_won_or_lost_every_game_hands_the_scale_to_the_first_finite_fallback() -> None:
    # R loses to A and B, who split their games; M loses to everyone: R and M are -inf, A and B finite.
    white, black = ["A", "B", "A", "B", "M", "M", "A"], ["R", "R", "B", "A", "A", "R", "B"]
    scores = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.5]
    fit = fit_joint(white, black, scores, reference="R", fallback_references=[("M", 900.0), ("B", 1200.0)])
    pinned = fit_joint(white, black, scores, reference="B", reference_rating=1200.0)
    assert (fit.reference, fit.reference_rating) == ("B", 1200.0)  # M, the first fallback, is infinite too
    assert [r.rating for r in fit.ratings()] == [r.rating for r in pinned.ratings()]
    assert fit.rating("R").rating == fit.rating("M").rating == -math.inf
    finite = fit_joint(white[2:4], black[2:4], scores[2:4], reference="A", fallback_references=[("B", 1.0)])
    assert finite.reference == "A"  # a finite reference keeps the scale


def test_unidentified_ratings_are_refused_with_the_players_named() -> None:
    with pytest.raises(ValueError, match=r"do not connect.*A, B.*C, D"):
        fit_joint(["A", "B", "C", "D"], ["B", "A", "D", "C"], [1.0, 1.0, 0.5, 1.0], reference="A")
    with pytest.raises(ValueError, match="reference R won or lost every game"):
        fit_joint(["R", "R", "A"], ["A", "B", "B"], [1.0, 1.0, 0.5], reference="R")
    # A and B split their games and beat C and D every time, who split theirs: nothing bounds the gap
    with pytest.raises(ValueError, match=r"A, B; C, D|C, D; A, B"):
        fit_joint(
            ["A", "B", "C", "D", "A", "B"],
            ["B", "A", "D", "C", "C", "D"],
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            reference="A",
        )
    with pytest.raises(ValueError, match="'Z' played no rated game"):
        fit_joint(["A"], ["B"], [0.5], reference="A").rating("Z")


def test_dispersion_is_one_without_draws_and_below_one_with_many() -> None:
    rng = np.random.default_rng(11)
    white, black = evaluation_games(model=1550.0, best=1650.0, per_pair=40, extra=1000)
    truth = strengths(1550.0, 1650.0)
    assert fit_joint(white, black, play(rng, white, black, truth, 0.0), reference="L3").dispersion == pytest.approx(
        1.0, abs=0.1
    )
    assert fit_joint(white, black, play(rng, white, black, truth, 0.6), reference="L3").dispersion < 0.6
