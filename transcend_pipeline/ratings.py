"""Rating maths in one place: Elo/logistic conversions, Bradley–Terry fits (a whole pool, and one evaluation's joint
fit with profile-likelihood intervals), score intervals and Holm's correction.

Every rating here is on the Elo scale: a 400-point gap means 10:1 odds, so a player rated `r_a`
scores `expected_score(r_a, r_b)` against one rated `r_b`. Draws count as half points throughout.

>>> print(round(expected_score(1700, 1500), 3))
0.76
>>> print(round(elo_difference_interval(wins=150, draws=0, losses=50)[0], 1))
190.8
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg
import scipy.special
import scipy.stats
from numpy.typing import ArrayLike

ELO_PER_NATURAL_UNIT = 400 / math.log(10)  # 173.7178: the logistic's natural unit in Elo points
LICHESS_CP_SLOPE = 0.00368208  # Lichess's centipawn -> winning-chances logistic
Z_95 = 1.959963984540054
MAX_NEWTON_STEP = 400.0
DIVERGED_RATING = 4000.0  # Elo from the reference: a Newton iterate past this is running off to infinity


def expected_score(r_a: ArrayLike, r_b: ArrayLike) -> np.ndarray:
    """The score a player rated `r_a` expects against one rated `r_b` (the Elo logistic)."""
    return 1.0 / (1.0 + 10.0 ** ((np.asarray(r_b, dtype=float) - np.asarray(r_a, dtype=float)) / 400.0))


def win_probability(cp: ArrayLike) -> np.ndarray:
    """The mover's expected score from a centipawn evaluation, as Lichess converts it (its 'winning chances')."""
    return 1.0 / (1.0 + np.exp(-LICHESS_CP_SLOPE * np.asarray(cp, dtype=float)))


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


@dataclass(frozen=True)
class FittedRating:
    """One player's rating from a joint fit, on the reported scale, with its profile-likelihood interval.

    The interval is relative to the fit's reference player, whose rating is fixed: it says how well this player is
    placed against the reference. `rating` is +inf (-inf) when the player won (lost) every game, and the interval
    is then open on that side.
    """

    player: str
    rating: float
    low: float
    high: float
    games: int
    wins: int
    draws: int
    losses: int


@dataclass(frozen=True)
class FittedDifference:
    """rating(a) − rating(b) on the reported scale, its profile interval at `level`, and the one-sided p-value of
    H0: a − b <= 0, so a claim "a is stronger than b" can be tested (and Holm-corrected) directly. For a contrast
    of several players, `a` and `b` name the players weighed positively and negatively."""

    a: str
    b: str
    estimate: float
    low: float
    high: float
    p_value: float
    level: float


def written_scale(raw: np.ndarray | float, *, centre: float, at: float, spread: float) -> np.ndarray | float:
    """at + spread * (raw - centre): the one function that puts fitted Elo on a reported scale (the panel dump's
    Lichess-like written Elo uses it too), so a number means the same thing wherever it is written."""
    result = at + spread * (np.asarray(raw, dtype=float) - centre)
    return float(result) if result.ndim == 0 else result


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone, capped at 1), in the input order: a claim holds at family-wise
    level alpha when its adjusted p-value is below alpha."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(p.size)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]))
    return adjusted.tolist()


def holm_levels(p_values: Sequence[float], alpha: float = 0.025) -> list[float]:
    """For each claim, the two-sided interval level matching its Holm step, so each interval agrees with its test.

    The claim at 1-based position k among the p-values sorted ascending is tested at alpha/(m − k + 1): the
    level is 1 − 2·alpha/(m − k + 1). (One-sided claims at alpha=0.025 give the usual 95% interval when m = 1.)
    """
    p = np.asarray(p_values, dtype=float)
    levels = np.empty(p.size)
    levels[np.argsort(p, kind="stable")] = 1.0 - 2.0 * alpha / (p.size - np.arange(p.size))
    return levels.tolist()


@dataclass(frozen=True)
class _PairGames:
    """Games aggregated per unordered pair (first < second): the likelihood and Pearson statistic are sums over
    pairs of these totals, so a fit costs the same for 100 games or 100,000."""

    first: np.ndarray
    second: np.ndarray
    count: np.ndarray
    score: np.ndarray  # first's total score against second
    score_squared: np.ndarray  # Σ s² of first's per-game scores, for the Pearson statistic

    def among(self, players: np.ndarray) -> _PairGames:
        """Only the pairs whose players are both in the boolean mask `players`."""
        keep = players[self.first] & players[self.second]
        return _PairGames(*(field[keep] for field in vars(self).values()))

    def log_likelihood(self, ratings: np.ndarray) -> float:
        """Σ s·log p + (1 − s)·log(1 − p) over the games, p the Elo logistic (computed without overflow)."""
        x = (ratings[self.first] - ratings[self.second]) / ELO_PER_NATURAL_UNIT
        return -float(np.sum(self.score * np.logaddexp(0.0, -x) + (self.count - self.score) * np.logaddexp(0.0, x)))

    def pearson(self, ratings: np.ndarray) -> float:
        """Σ over games of (s − p)² / (p(1 − p)), from the per-pair sums Σ s and Σ s²."""
        p = scipy.special.expit((ratings[self.first] - ratings[self.second]) / ELO_PER_NATURAL_UNIT)
        squares = self.score_squared - 2.0 * p * self.score + self.count * p**2
        return float(np.sum(squares / (p * (1.0 - p))))

    def gradient_and_information(self, ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The log-likelihood's gradient in Elo points and its (dense) observed information matrix."""
        n = ratings.size
        p = scipy.special.expit((ratings[self.first] - ratings[self.second]) / ELO_PER_NATURAL_UNIT)
        residual = (self.score - self.count * p) / ELO_PER_NATURAL_UNIT
        gradient = np.bincount(self.first, residual, n) - np.bincount(self.second, residual, n)
        weight = self.count * p * (1.0 - p) / ELO_PER_NATURAL_UNIT**2
        information = np.zeros((n, n))
        information[self.first, self.second] = -weight
        information[self.second, self.first] = -weight
        information[np.diag_indices(n)] = np.bincount(self.first, weight, n) + np.bincount(self.second, weight, n)
        return gradient, information


class _Profile:
    """The log-likelihood of `games` maximised over ratings `value · direction + basis @ θ` for a fixed `value`.

    Each call refits by Newton's method from the previous call's θ, so a root search along `value` costs only a
    few Newton steps per point. The log-likelihood is concave in the ratings, so Newton with step halving converges.
    """

    def __init__(
        self, games: _PairGames, direction: np.ndarray, basis: np.ndarray, theta: np.ndarray, names: list[str]
    ) -> None:
        self._games, self._direction, self._basis, self._names = games, direction, basis, names
        self.theta = theta

    def __call__(self, value: float) -> float:
        theta = self.theta
        ratings = value * self._direction + self._basis @ theta
        current = self._games.log_likelihood(ratings)
        for _ in range(100):
            gradient, information = self._games.gradient_and_information(ratings)
            step = np.linalg.solve(self._basis.T @ information @ self._basis, self._basis.T @ gradient)
            size = float(np.abs(step).max(initial=0.0))
            step *= min(1.0, MAX_NEWTON_STEP / max(size, 1e-300))
            while True:  # halve until the step does not lose likelihood (only ever needed far from the optimum)
                trial = theta + step
                trial_ratings = value * self._direction + self._basis @ trial
                trial_likelihood = self._games.log_likelihood(trial_ratings)
                if trial_likelihood >= current - 1e-9 or np.abs(step).max(initial=0.0) < 1e-9:
                    break
                step /= 2.0
            theta, ratings, current = trial, trial_ratings, trial_likelihood
            runaway = [name for name, t in zip(self._names, theta, strict=True) if abs(t) > DIVERGED_RATING]
            if runaway:
                raise ValueError(
                    f"no finite maximum-likelihood ratings: {', '.join(runaway)} ran past ±{DIVERGED_RATING:g} Elo "
                    "of the reference (results that separate players, e.g. a group that won every game between groups)"
                )
            if size < 1e-7:
                self.theta = theta
                return current
        raise RuntimeError(f"Newton's method did not converge (last step {size:.3g} Elo)")


def _perfect_scores(games: _PairGames, n: int) -> np.ndarray:
    """+1 (−1) for players whose rating is +inf (−inf), else 0: those who won (lost) every game, then, layer by layer,
    those who won (lost) every game against the players still finite. A ladder whose strongest member beats everyone
    and whose next one beats everyone else is such a layered case (the paper's Stockfish levels against a weak model);
    their games with each other then say nothing about the finite players and drop out of the fit."""
    perfect = np.zeros(n, dtype=int)
    while True:
        kept = games.among(perfect == 0)
        played = np.bincount(kept.first, kept.count, n) + np.bincount(kept.second, kept.count, n)
        points = np.bincount(kept.first, kept.score, n) + np.bincount(kept.second, kept.count - kept.score, n)
        layer = np.where(played > 0, np.where(points == played, 1, np.where(points == 0, -1, 0)), 0)
        if not layer.any():
            return perfect
        perfect += layer


class JointFit:
    """One maximum-likelihood Bradley–Terry fit of every rated game of an evaluation, with profile intervals.

    Ratings are on the Elo logistic, draws as half points, with no prior. `reference` is pinned at
    `reference_rating` and every other rating, interval and difference is relative to it; the reported scale is
    `reference_rating + scale · (raw Elo − raw reference)` (`written_scale`), so `scale` stretches everything.

    Intervals and p-values come from the profile likelihood (a constrained refit for each value of the contrast),
    with the deviance divided by a quasi-likelihood `dispersion` phi = Pearson χ² / (games − free ratings): draws
    make a game's score less variable than a win-or-loss (phi < 1; a Bernoulli likelihood would give intervals too
    wide), overdispersion makes it more (phi > 1). phi is 1 when there are no spare degrees of freedom.

    A player who won (lost) every game has rating +inf (−inf): the likelihood's supremum is the fit of everyone
    else with that player's games contributing nothing, and its interval and differences are open on that side.
    """

    players: list[str]
    dispersion: float
    scale: float
    reference_rating: float
    reference: str

    def __init__(
        self,
        players: list[str],
        games: _PairGames,
        results: np.ndarray,
        *,
        reference: str,
        reference_rating: float,
        scale: float,
    ) -> None:
        self.players, self.reference, self.reference_rating, self.scale = players, reference, reference_rating, scale
        self._index = {name: k for k, name in enumerate(players)}
        self._reference = self._index[reference]
        self._games, self._results = games, results
        self._perfect = _perfect_scores(games, len(players))
        self._check_identified()
        n = len(players)
        finite = self._perfect == 0
        free = np.flatnonzero(finite & (np.arange(n) != self._reference))
        basis = np.eye(n)[:, free]
        kept = games.among(finite)
        fit = _Profile(kept, np.zeros(n), basis, np.zeros(free.size), [players[k] for k in free])
        self._log_likelihood = fit(0.0)
        ratings = basis @ fit.theta
        _, information = kept.gradient_and_information(ratings)
        self._covariance = np.zeros((n, n))
        self._covariance[np.ix_(free, free)] = np.linalg.inv(basis.T @ information @ basis)
        self._raw = np.where(finite, ratings, np.copysign(math.inf, self._perfect))
        spare = int(kept.count.sum()) - free.size
        self.dispersion = kept.pearson(ratings) / spare if spare > 0 else 1.0

    def _check_identified(self) -> None:
        """Raise a ValueError naming the players when some rating (other than a perfect score's) is not finite."""
        n, games = len(self.players), self._games
        links = scipy.sparse.coo_matrix((np.ones(games.first.size), (games.first, games.second)), shape=(n, n))
        count, label = scipy.sparse.csgraph.connected_components(links, directed=False)
        if count > 1:
            groups = "; ".join(", ".join(self.players[k] for k in np.flatnonzero(label == g)) for g in range(count))
            raise ValueError(f"the games do not connect every player, so no ratings can compare these groups: {groups}")
        if self._perfect[self._reference]:
            raise ValueError(f"the reference {self.reference} won or lost every game: its rating is infinite")
        finite = self._perfect == 0
        touches_finite = np.zeros(n, dtype=bool)
        finite_pair = finite[games.first] | finite[games.second]
        touches_finite[games.first[finite_pair]] = touches_finite[games.second[finite_pair]] = True
        if not touches_finite.all():
            names = ", ".join(self.players[k] for k in np.flatnonzero(~touches_finite))
            raise ValueError(f"{names} played only players who won or lost every game: nothing bounds their ratings")
        kept = games.among(finite)
        scored = kept.score > 0  # first took a point (or half) off second: an edge first -> second, and vice versa
        conceded = kept.score < kept.count
        beats = scipy.sparse.coo_matrix(
            (
                np.ones(scored.sum() + conceded.sum()),
                (np.r_[kept.first[scored], kept.second[conceded]], np.r_[kept.second[scored], kept.first[conceded]]),
            ),
            shape=(n, n),
        ).tocsr()[finite][:, finite]
        count, label = scipy.sparse.csgraph.connected_components(beats, directed=True, connection="strong")
        if count > 1:
            names = np.asarray(self.players)[finite]
            groups = "; ".join(", ".join(names[label == g]) for g in range(count))
            raise ValueError(
                "no finite maximum-likelihood ratings: some groups of players won every game against other groups "
                f"(groups: {groups})"
            )

    def _player(self, name: str) -> int:
        if name not in self._index:
            raise ValueError(f"{name!r} played no rated game in this fit")
        return self._index[name]

    def _weights(self, weights: Mapping[str, float]) -> np.ndarray:
        """A contrast's weights by player index; they must sum to 0, so that it does not depend on the reference."""
        vector = np.zeros(len(self.players))
        for name, weight in weights.items():
            vector[self._player(name)] += weight
        if not np.any(vector) or abs(vector.sum()) > 1e-9:
            raise ValueError(f"a contrast needs weights that sum to 0 and are not all 0, got {dict(weights)}")
        return vector

    def _profile(self, weights: np.ndarray) -> _Profile:
        """The profile log-likelihood of the contrast weights · ratings (raw Elo), warm-started at the fit.

        One player p the contrast weighs (the first with a positive weight that is not the reference) carries the
        contrast's value: ratings = value · e_p / w_p + Σ_k θ_k (e_k − w_k / w_p · e_p) over the other free players,
        so weights · ratings = value whatever θ. Players with perfect scores that the contrast does not weigh stay
        at ±inf, so their games drop out; those it weighs take part.
        """
        n = len(self.players)
        weighed = weights != 0
        active = (self._perfect == 0) | weighed
        candidates = [k for k in np.flatnonzero(weighed) if k != self._reference]
        pivot = next((k for k in candidates if weights[k] > 0), candidates[0])
        free = np.flatnonzero(active & ~np.isin(np.arange(n), (pivot, self._reference)))
        direction = np.zeros(n)
        direction[pivot] = 1.0 / weights[pivot]
        basis = np.eye(n)[:, free]
        basis[pivot] = -weights[free] / weights[pivot]
        start = np.nan_to_num(self._raw, posinf=0.0, neginf=0.0)
        return _Profile(self._games.among(active), direction, basis, start[free], [self.players[k] for k in free])

    def _contrast(self, weights: np.ndarray, level: float) -> tuple[float, float, float, float]:
        """weights · ratings in raw Elo: the estimate, its profile interval at `level`, the one-sided p-value."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
        weighed = weights != 0
        with np.errstate(invalid="ignore"):  # inf − inf is nan: handled below
            estimate = float(weights[weighed] @ self._raw[weighed])
        if math.isnan(estimate):  # infinities of both signs: the games say nothing about the contrast
            return estimate, -math.inf, math.inf, 0.5
        profile = self._profile(weights)
        threshold = float(scipy.stats.chi2.ppf(level, 1))

        @functools.cache
        def excess(value: float) -> float:
            return 2.0 * (self._log_likelihood - profile(value)) / self.dispersion - threshold

        p_value = self._p_value(profile, estimate, 0.0)
        if math.isinf(estimate):
            toward, inner, step = math.copysign(1.0, estimate), 0.0, 100.0
            while excess(inner) >= 0.0:  # walk toward the open side until the value is plausible
                inner += toward * step
                step *= 2.0
            end = _root_beyond(excess, inner, -toward, 100.0)
            low, high = (end, estimate) if toward > 0 else (estimate, end)
        else:
            variance = float(weights @ self._covariance @ weights)
            step = math.sqrt(threshold * self.dispersion * variance)  # the Wald half-width: a first guess
            low, high = _root_beyond(excess, estimate, -1.0, step), _root_beyond(excess, estimate, 1.0, step)
        return estimate, low, high, p_value

    def _p_value(self, profile: _Profile, estimate: float, null: float) -> float:
        """One-sided p-value for a contrast above `null` (raw Elo): the signed root of the profile deviance there."""
        deviance = max(2.0 * (self._log_likelihood - profile(null)) / self.dispersion, 0.0)
        return float(scipy.stats.norm.sf(float(np.sign(estimate - null)) * math.sqrt(deviance)))

    def p_value_above(self, player: str, value: float) -> float:
        """One-sided p-value for rating(player) > `value` on the reported scale (a cap, say): one profile evaluation
        at `value`, as `difference` tests a − b > 0, so no interval at an extreme level is ever needed."""
        k = self._player(player)
        if k == self._reference:
            raise ValueError(f"the reference {player!r} is fixed at {self.reference_rating}: nothing to test")
        null = (value - self.reference_rating) / self.scale
        return self._p_value(
            self._profile(self._weights({player: 1.0, self.reference: -1.0})), float(self._raw[k]), null
        )

    def rating(self, player: str, level: float = 0.95) -> FittedRating:
        """`player`'s rating and interval relative to the reference (the reference itself: its fixed rating)."""
        k = self._player(player)
        wins, draws, losses = (int(x) for x in self._results[k])
        if k == self._reference:
            values = [self.reference_rating] * 3
        else:
            estimate, low, high, _ = self._contrast(self._weights({player: 1.0, self.reference: -1.0}), level)
            raw = np.array([estimate, low, high])
            values = written_scale(raw, centre=0.0, at=self.reference_rating, spread=self.scale).tolist()
        return FittedRating(player, *values, games=wins + draws + losses, wins=wins, draws=draws, losses=losses)

    def difference(self, a: str, b: str, level: float = 0.95) -> FittedDifference:
        """rating(a) − rating(b) with its profile interval at `level` and the one-sided p-value for a > b."""
        if self._player(a) == self._player(b):
            raise ValueError(f"a difference needs two players, got {a!r} twice")
        return self.contrast({a: 1.0, b: -1.0}, level)

    def contrast(self, weights: Mapping[str, float], level: float = 0.95) -> FittedDifference:
        """Σ weight · rating over the players weighed (weights summing to 0), with its profile interval at `level`
        and the one-sided p-value for a contrast above 0: for instance one model's gain over its clone against
        another's, {model_a: 1, clone_a: −1, model_b: −1, clone_b: 1}. In the result, `a` names the players
        weighed positively and `b` those weighed negatively."""
        vector = self._weights(weights)
        estimate, low, high, p_value = self._contrast(vector, level)
        a, b = (" + ".join(name for name, w in weights.items() if sign * w > 0) for sign in (1, -1))
        return FittedDifference(a, b, estimate * self.scale, low * self.scale, high * self.scale, p_value, level)

    def ratings(self, level: float = 0.95) -> list[FittedRating]:
        """Every player's rating, in `players` order."""
        return [self.rating(player, level) for player in self.players]


def _root_beyond(excess: Callable[[float], float], inner: float, side: float, step: float) -> float:
    """Where `excess` (negative at `inner`, increasing away from it) crosses zero on `side` of `inner`: step
    outward, doubling, until it changes sign, then Brent's method."""
    outer = inner + side * step
    while excess(outer) < 0.0:
        inner, step = outer, 2.0 * step
        outer = inner + side * step
    return float(scipy.optimize.brentq(excess, min(inner, outer), max(inner, outer), xtol=1e-6))


def fit_joint(
    white: Sequence[str],
    black: Sequence[str],
    score_for_white: Sequence[float] | np.ndarray,
    *,
    reference: str,
    reference_rating: float = 1500.0,
    scale: float = 1.0,
    fallback_references: Sequence[tuple[str, float]] = (),
) -> JointFit:
    """One Bradley–Terry fit of every rated game of an evaluation (see `JointFit`), `reference` pinned.

    Fitting all games at once lets the ladder's games among themselves place the ladder, and every model and
    baseline on it, with intervals that account for the ladder's own uncertainty. `scale` is the reported points
    per Elo point (1.5 on panel data, whose dump writes Elos stretched by 1.5; 1 on Lichess data). If `reference`
    won or lost every game, its rating is infinite and cannot pin anything: the first of `fallback_references`
    (name, rating) whose rating is finite pins the scale instead, and the fit's `reference` names it.
    """
    s = np.asarray(score_for_white, dtype=float)
    if not len(white) == len(black) == s.size or s.size == 0:
        raise ValueError(f"need one white, black and score per game, got {len(white)}, {len(black)} and {s.size}")
    if not np.isin(s, (0.0, 0.5, 1.0)).all():
        raise ValueError("scores must be 1 (white won), 0.5 (draw) or 0 (black won)")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be positive, got {scale}")
    players = list(dict.fromkeys(name for game in zip(white, black, strict=True) for name in game))
    if reference not in players:
        raise ValueError(f"the reference {reference!r} played no game")
    index = {name: k for k, name in enumerate(players)}
    w, b = np.array([index[name] for name in white]), np.array([index[name] for name in black])
    if np.any(w == b):
        raise ValueError(f"{players[w[w == b][0]]} played itself")
    n = len(players)
    first, second = np.minimum(w, b), np.maximum(w, b)
    own = np.where(w == first, s, 1.0 - s)
    pairs, which = np.unique(first * n + second, return_inverse=True)
    games = _PairGames(
        pairs // n, pairs % n, np.bincount(which).astype(float), np.bincount(which, own), np.bincount(which, own**2)
    )
    results = np.column_stack(
        [np.bincount(w, s == outcome, n) + np.bincount(b, s == 1.0 - outcome, n) for outcome in (1.0, 0.5, 0.0)]
    ).astype(int)
    perfect = _perfect_scores(games, n)
    reference, reference_rating = next(
        (
            (name, rating)
            for name, rating in [(reference, reference_rating), *fallback_references]
            if name in index and not perfect[index[name]]
        ),
        (reference, reference_rating),  # none finite: JointFit says why
    )
    return JointFit(players, games, results, reference=reference, reference_rating=reference_rating, scale=scale)
