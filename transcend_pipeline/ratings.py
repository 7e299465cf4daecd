"""Rating maths in one place: Elo/logistic conversions, Glicko-2, Bradley–Terry fits and score intervals.

Every rating here is on the Elo scale: a 400-point gap means 10:1 odds, so a player rated `r_a`
scores `expected_score(r_a, r_b)` against one rated `r_b`. Draws count as half points throughout.

>>> round(expected_score(1700, 1500), 3)
0.76
>>> round(elo_difference_interval(wins=150, draws=0, losses=50)[0], 1)
190.8
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.optimize
import scipy.sparse
import scipy.sparse.linalg
from numpy.typing import ArrayLike

ELO_PER_NATURAL_UNIT = 400 / math.log(10)  # 173.7178: Glicko-2's scale, and the logistic's in Elo points
LICHESS_CP_SLOPE = 0.00368208  # Lichess's centipawn -> winning-chances logistic
Z_95 = 1.959963984540054
GLICKO2_DEFAULT_PRIOR = (1500.0, 350.0)  # Glickman's unrated player
GLICKO2_DEFAULT_VOLATILITY = 0.06
BRADLEY_TERRY_PRIOR_SD = 1000.0  # worth ~1/8 of a game at even odds: negligible unless every game was won or lost
MAX_NEWTON_STEP = 400.0


@dataclass(frozen=True)
class RatingEstimate:
    """One player's rating from a set of games, with its 95% interval and the results behind it."""

    rating: float
    low: float
    high: float
    games: int
    wins: int
    draws: int
    losses: int


def expected_score(r_a: ArrayLike, r_b: ArrayLike) -> np.ndarray:
    """The score a player rated `r_a` expects against one rated `r_b` (the Elo logistic)."""
    return 1.0 / (1.0 + 10.0 ** ((np.asarray(r_b, dtype=float) - np.asarray(r_a, dtype=float)) / 400.0))


def win_probability(cp: ArrayLike) -> np.ndarray:
    """The mover's expected score from a centipawn evaluation, as Lichess converts it (its 'winning chances')."""
    return 1.0 / (1.0 + np.exp(-LICHESS_CP_SLOPE * np.asarray(cp, dtype=float)))


def glicko2_update(
    rating: float,
    rd: float,
    vol: float,
    opponents: list[tuple[float, float]],
    scores: list[float],
    tau: float = 0.5,
) -> tuple[float, float, float]:
    """One Glicko-2 rating period (Glickman, "Example of the Glicko-2 system"); returns (rating, rd, vol).

    `opponents` are (rating, rd) pairs, `scores` 1 / 0.5 / 0 for each game. `tau` limits how fast
    volatility may move (Glickman suggests 0.3–1.2).
    """
    mu, phi = (rating - 1500.0) / ELO_PER_NATURAL_UNIT, rd / ELO_PER_NATURAL_UNIT
    if not opponents:  # an idle period only makes us less sure
        return rating, math.sqrt(phi**2 + vol**2) * ELO_PER_NATURAL_UNIT, vol
    table = np.asarray(opponents, dtype=float).reshape(-1, 2)
    mu_j, phi_j = (table[:, 0] - 1500.0) / ELO_PER_NATURAL_UNIT, table[:, 1] / ELO_PER_NATURAL_UNIT
    s = np.asarray(scores, dtype=float)
    g = 1.0 / np.sqrt(1.0 + 3.0 * phi_j**2 / math.pi**2)
    e = 1.0 / (1.0 + np.exp(-g * (mu - mu_j)))
    v = 1.0 / float(np.sum(g**2 * e * (1.0 - e)))
    delta = v * float(np.sum(g * (s - e)))
    new_vol = _glicko2_volatility(phi, vol, v, delta, tau)
    phi_star = math.sqrt(phi**2 + new_vol**2)
    new_phi = 1.0 / math.sqrt(1.0 / phi_star**2 + 1.0 / v)
    new_mu = mu + new_phi**2 * float(np.sum(g * (s - e)))
    return 1500.0 + ELO_PER_NATURAL_UNIT * new_mu, ELO_PER_NATURAL_UNIT * new_phi, new_vol


def _glicko2_volatility(phi: float, vol: float, v: float, delta: float, tau: float, tolerance: float = 1e-6) -> float:
    """Step 5 of Glickman's procedure: the new volatility by the Illinois algorithm."""
    a = math.log(vol**2)

    def f(x: float) -> float:
        ex = math.exp(x)
        return ex * (delta**2 - phi**2 - v - ex) / (2.0 * (phi**2 + v + ex) ** 2) - (x - a) / tau**2

    lo = a
    if delta**2 > phi**2 + v:
        hi = math.log(delta**2 - phi**2 - v)
    else:
        k = 1
        while f(a - k * tau) < 0:
            k += 1
        hi = a - k * tau
    f_lo, f_hi = f(lo), f(hi)
    while abs(hi - lo) > tolerance:
        c = lo + (lo - hi) * f_lo / (f_hi - f_lo)
        f_c = f(c)
        if f_c * f_hi <= 0:
            lo, f_lo = hi, f_hi
        else:
            f_lo /= 2.0
        hi, f_hi = c, f_c
    return math.exp(lo / 2.0)


def pooled_rating(
    opponent_ratings: ArrayLike,
    scores: ArrayLike,
    *,
    method: Literal["bradley_terry", "glicko2"] = "bradley_terry",
    prior: tuple[float, float] | None = None,
) -> RatingEstimate:
    """One player's rating from all its games against opponents of known, fixed rating, with a 95% interval.

    bradley_terry: the maximum of the Elo-logistic likelihood times a Gaussian prior `(mean, sd)`,
    by default centred on the opponents' mean rating with sd 1000 — so weak that it only matters
    when every game was won or lost, where it keeps the answer finite. The interval is ±1.96/√I with
    I the observed Fisher information (plus the prior's). `prior=(m, math.inf)` gives the plain MLE.

    glicko2: one Glicko-2 rating period from `prior` = (rating, RD), default (1500, 350) (the
    Transcendence paper used RD 500), opponents with RD 0; the interval is rating ± 1.96·RD. Glicko-2
    takes a single step from the prior, so it is accurate only when the answer lies near the prior.
    """
    opponents = np.asarray(opponent_ratings, dtype=float).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if opponents.shape != s.shape or s.size == 0:
        raise ValueError(f"need one score per game and at least one game, got {opponents.size} and {s.size}")
    if np.any((s < 0) | (s > 1)):
        raise ValueError("scores must lie in [0, 1] (1 win, 0.5 draw, 0 loss)")
    counts = {"games": int(s.size), "wins": int(np.sum(s == 1)), "draws": int(np.sum(s == 0.5))}
    counts["losses"] = int(np.sum(s == 0))
    if method == "glicko2":
        prior_rating, prior_rd = prior or GLICKO2_DEFAULT_PRIOR
        rating, rd, _ = glicko2_update(
            prior_rating, prior_rd, GLICKO2_DEFAULT_VOLATILITY, [(r, 0.0) for r in opponents], list(s)
        )
        return RatingEstimate(rating, rating - Z_95 * rd, rating + Z_95 * rd, **counts)
    if method != "bradley_terry":
        raise ValueError(f"method must be 'bradley_terry' or 'glicko2', got {method!r}")
    prior_mean, prior_sd = prior or (float(opponents.mean()), BRADLEY_TERRY_PRIOR_SD)
    precision = 1.0 / prior_sd**2
    if precision == 0 and s.min() == s.max() and s[0] in (0.0, 1.0):
        raise ValueError("without a prior, all wins or all losses have no finite maximum-likelihood rating")
    slope = 1.0 / ELO_PER_NATURAL_UNIT

    def gradient(r: float) -> float:
        return slope * float(np.sum(s - expected_score(r, opponents))) - precision * (r - prior_mean)

    lo, hi = float(min(opponents.min(), prior_mean)) - 500.0, float(max(opponents.max(), prior_mean)) + 500.0
    while gradient(lo) < 0:  # the gradient falls monotonically: widen until it brackets its root
        lo -= 2 * (hi - lo)
    while gradient(hi) > 0:
        hi += 2 * (hi - lo)
    rating = float(scipy.optimize.brentq(gradient, lo, hi, xtol=1e-9))
    p = expected_score(rating, opponents)
    half_width = Z_95 / math.sqrt(slope**2 * float(np.sum(p * (1.0 - p))) + precision)
    return RatingEstimate(rating, rating - half_width, rating + half_width, **counts)


def fit_pool_ratings(
    white_ids: ArrayLike,
    black_ids: ArrayLike,
    scores_for_white: ArrayLike,
    n_players: int,
    *,
    anchor_median: float = 1500.0,
    prior_sd: float = 400.0,
    max_iterations: int = 100,
) -> np.ndarray:
    """Bradley–Terry ratings of a whole pool from its own games, placed so their median is `anchor_median`.

    A Gaussian prior (sd `prior_sd` Elo around the pool's centre) keeps players with few games, or
    only wins, finite; with hundreds of games per player it is negligible. Colour is not modelled.
    Solved by Newton's method, each step by preconditioned conjugate gradients on the sparse Hessian:
    a handful of iterations, each linear in the games (100k games of 24 players: ~0.2 s).
    """
    white, black = np.asarray(white_ids, dtype=np.int64), np.asarray(black_ids, dtype=np.int64)
    s = np.asarray(scores_for_white, dtype=float)
    if not white.shape == black.shape == s.shape:
        raise ValueError("white_ids, black_ids and scores_for_white must have the same length")
    if white.size and (min(white.min(), black.min()) < 0 or max(white.max(), black.max()) >= n_players):
        raise ValueError(f"player ids must lie in [0, {n_players})")
    slope, precision = 1.0 / ELO_PER_NATURAL_UNIT, 1.0 / prior_sd**2
    pairs_rows = np.concatenate([white, black, white, black])
    pairs_cols = np.concatenate([white, black, black, white])
    ratings = np.zeros(n_players)
    for _ in range(max_iterations):
        p = expected_score(ratings[white], ratings[black])
        residual = s - p
        gradient = (
            slope * (np.bincount(white, residual, n_players) - np.bincount(black, residual, n_players))
            - precision * ratings
        )
        weight = slope**2 * p * (1.0 - p)
        information = scipy.sparse.coo_matrix(
            (np.concatenate([weight, weight, -weight, -weight]), (pairs_rows, pairs_cols)), shape=(n_players,) * 2
        ).tocsc() + precision * scipy.sparse.identity(n_players, format="csc")
        jacobi = scipy.sparse.diags(1.0 / information.diagonal())
        step, _ = scipy.sparse.linalg.cg(information, gradient, rtol=1e-6, atol=0.0, M=jacobi, maxiter=10 * n_players)
        step *= min(1.0, MAX_NEWTON_STEP / max(float(np.abs(step).max()), 1e-300))
        ratings += step
        if np.abs(step).max() < 1e-7:
            break
    return ratings + (anchor_median - float(np.median(ratings)))


def elo_difference_interval(wins: int, draws: int, losses: int) -> tuple[float, float, float]:
    """The Elo difference a head-to-head score implies, with a 95% interval: (elo, low, high).

    The interval is Wilson's score interval widened to draws: it inverts the score test using the
    per-game variance p(1−p) − δ/4 at the hypothesised score p (δ the observed draw rate), then maps
    both ends through the Elo logistic. So it is asymmetric, like Elo itself, and keeps a finite end
    when every game was won or lost (where the estimate itself is ±inf).
    """
    n = wins + draws + losses
    if n <= 0 or min(wins, draws, losses) < 0:
        raise ValueError(f"need a non-negative number of games, at least one, got {wins}/{draws}/{losses}")
    score, draw_rate = (wins + 0.5 * draws) / n, draws / n
    # (score - p)^2 = z^2 (p - p^2 - draw_rate/4) / n, a quadratic in p
    a = n + Z_95**2
    b = 2 * n * score + Z_95**2
    c = n * score**2 + Z_95**2 * draw_rate / 4
    root = math.sqrt(max(b * b - 4 * a * c, 0.0))
    low, high = min((b - root) / (2 * a), score), max((b + root) / (2 * a), score)  # exact ends at 0% and 100%
    return _score_to_elo(score), _score_to_elo(low), _score_to_elo(high)


def _score_to_elo(score: float) -> float:
    """The Elo difference at which `score` is the expected score (±inf at 1 and 0)."""
    if score <= 0.0:
        return -math.inf
    if score >= 1.0:
        return math.inf
    return 400.0 * math.log10(score / (1.0 - score))
