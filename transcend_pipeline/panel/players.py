"""The panel: imperfect experts with persistent, diverse quirks, and the policies derived from them.

Player r plays π_r(a|s) ∝ exp((Q(s,a) + σ_r·B_r[piece, destination]) / T_r): a shared skill Q (what every player
knows about the position) plus a private bias table B_r (which kinds of moves this player over- or under-values,
the same in every game). Low T_r and σ_r make a strong player. Because the B_r are independent, averaging the
players' policies cancels their quirks: the argmax of the average, `consensus`, beats every member — the
*Transcendence* majority vote. ρ mixes in a bias table shared by all players, so errors correlate and the vote
gains less.

The diversity study dials a panel without touching its players' skill: `rho` correlates the quirks of the same
players (same T_r, σ_r), and `equal_players` makes a panel of k players who all have one player's T and σ and
differ only in their quirk tables — the first of them *is* that player (same table, same name), so the arms nest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import chess
import numpy as np

from transcend_pipeline.policy import Policy, sample
from transcend_pipeline.settings import profile_overrides

Q_SOURCES = ("stockfish", "tactical")


@dataclass(frozen=True)
class PanelConfig:
    """Every knob of the panel, its games and its dumps; the defaults are the `demo` world."""

    n_players: int = 64
    seed: int = 20240611
    temperature_range: tuple[float, float] = (0.01, 0.20)  # T_r of the best and of the weakest player
    bias_range: tuple[float, float] = (0.03, 0.10)  # σ_r of the best and of the weakest player
    rho: float = 0.0  # share of bias variance common to all players (correlated errors)
    equal_players: int = 0  # > 0: the panel is this many players with the skill (T, σ) of player `equal_to`
    equal_to: int = 0  # the player (index among `n_players`) whose skill the equal players share
    q_source: str = "stockfish"  # 'stockfish' (depth-limited search) or 'tactical' (material + exchanges)
    depth: int = 1
    multipv: int = 6  # lines asked of Stockfish; moves beyond get the lowest listed score minus floor_cp
    floor_cp: float = 50.0
    games_per_month: int = 12_000
    calibration_share: float = 0.10  # first games of a month paired at random, to rate players before matchmaking
    pairing_window: float = 80.0  # Elo: opponents drawn with weight exp(-½(Δ/window)²)
    weak_activity: float = 4.0  # the weakest player plays this many times as often as the best
    rating_spread: float = 1.5  # written Elo = 1500 + spread·(fit − median): a Lichess-like width (see README)
    opening_plies: tuple[int, int] = (2, 6)  # random near-best plies at the start, drawn in this range
    opening_tolerance: float = 0.03  # "near-best": expected score within this of the best move
    resign_cp: int = 600
    resign_plies: int = 4  # consecutive own moves below -resign_cp before a player resigns
    max_plies: int = 160
    adjudicate_cp: int = 300  # at the ply cap: decisive beyond ±adjudicate_cp, else a draw
    chunk_games: int = 20  # games per engine reset: a chunk's Q depends only on its own positions

    def __post_init__(self) -> None:
        if self.q_source not in Q_SOURCES:
            raise ValueError(f"q_source must be one of {Q_SOURCES}, got {self.q_source!r}")
        if self.n_players < 2 or not 0.0 <= self.rho <= 1.0:
            raise ValueError(f"need n_players >= 2 and 0 <= rho <= 1, got {self.n_players} and {self.rho}")
        if min(*self.temperature_range, *self.bias_range) <= 0:
            raise ValueError("temperatures and bias scales must be positive")
        if self.equal_players < 0 or not 0 <= self.equal_to < self.n_players:
            raise ValueError(f"need equal_players >= 0 and 0 <= equal_to < {self.n_players}")

    @property
    def size(self) -> int:
        """How many players this panel has: `n_players`, or `equal_players` for an equal-skill panel."""
        return self.equal_players or self.n_players

    @classmethod
    def for_profile(cls, profile: str) -> PanelConfig:
        """`demo`: the `make run` world (cap buckets 1000/1300/1500 each ≥ 8 players, ≥ 2,000 games); `smoke`: seconds
        (`settings.PROFILES`)."""
        return cls(**profile_overrides(profile, "panel"))

    def derived_seed(self, *parts: object) -> list[int]:
        """A numpy seed sequence entropy for (panel seed, *parts): stable across processes and Python runs."""
        digest = hashlib.sha256(repr((self.seed, *parts)).encode()).digest()
        return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


class QSource(Protocol):
    """The shared skill: each legal move's value as the mover's expected score (0..1)."""

    def q_values(self, board: chess.Board) -> dict[chess.Move, float]: ...


class Panel:
    """The players' parameters: temperatures T, bias scales σ and bias tables B[r, piece type, relative square]."""

    def __init__(self, config: PanelConfig) -> None:
        self.config = config
        n = config.n_players
        # Geometric steps: Elo is steep in T and σ where they are small, so equal ratios give roughly equal Elo steps.
        rank = np.linspace(0.0, 1.0, n)
        (t_best, t_worst), (s_best, s_worst) = config.temperature_range, config.bias_range
        temperatures = t_best * (t_worst / t_best) ** rank
        sigmas = s_best * (s_worst / s_best) ** rank
        skill_of = [config.equal_to] * config.equal_players if config.equal_players else list(range(n))
        self.temperatures, self.sigmas = temperatures[skill_of], sigmas[skill_of]
        shared = np.random.default_rng(config.derived_seed("shared-bias")).standard_normal((7, 64))
        own = np.stack(
            [
                np.random.default_rng(config.derived_seed(*_bias_key(config, r))).standard_normal((7, 64))
                for r in range(config.size)
            ]
        )
        self.biases = np.sqrt(config.rho) * shared + np.sqrt(1.0 - config.rho) * own

    @property
    def names(self) -> list[str]:
        return [player_name(self.config, r) for r in range(self.config.size)]

    def policies(
        self, board: chess.Board, q: dict[chess.Move, float], members: Sequence[int]
    ) -> tuple[list, np.ndarray]:
        """(legal moves, π of each member over them): one row per member, in the order of `members`."""
        moves = list(q)
        values = np.fromiter(q.values(), dtype=np.float64, count=len(moves))
        pieces = np.fromiter((board.piece_type_at(m.from_square) for m in moves), dtype=np.intp, count=len(moves))
        squares = np.fromiter((m.to_square for m in moves), dtype=np.intp, count=len(moves))
        if board.turn == chess.BLACK:
            squares ^= 56  # mirror ranks: destinations are relative to the mover
        rows = np.asarray(members, dtype=np.intp)
        biases = self.sigmas[rows, None] * self.biases[rows[:, None], pieces, squares]
        logits = (values + biases) / self.temperatures[rows, None]
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return moves, weights / weights.sum(axis=1, keepdims=True)


def _bias_key(config: PanelConfig, r: int) -> tuple:
    """What seeds player r's own quirk table: its index, or for an equal-skill panel the shared player's table for
    the first member and fresh tables for the others."""
    if not config.equal_players or r == 0:
        return ("bias", config.equal_to if config.equal_players else r)
    return ("equal-bias", config.equal_to, r)


def player_name(config: PanelConfig, r: int) -> str:
    """A Lichess-style user name; it does not reveal the player's rank. The same policy keeps its name in every
    variant (an equal-skill panel's first member is player `equal_to`); another policy gets another name."""
    key = _bias_key(config, r)
    name = (
        "panel_"
        + hashlib.sha256(repr((config.seed, "name", key[-1] if key[0] == "bias" else key)).encode()).hexdigest()[:8]
    )
    return name if config.rho == 0 else f"{name}~rho{config.rho:g}"


class PanelPolicy(Policy):
    """A player (sampling π_r), a clone (argmax of π_r) or a consensus (argmax of the members' mean π)."""

    def __init__(
        self,
        panel: Panel,
        q_source: QSource,
        members: Sequence[int],
        *,
        argmax: bool,
        label: str,
        weights: Sequence[float] | None = None,
    ) -> None:
        if not members:
            raise ValueError("a panel policy needs at least one member")
        if weights is not None and (len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"need one non-negative weight per member, not all zero; got {weights}")
        self.panel = panel
        self.q_source = q_source
        self.members = tuple(members)
        self.argmax = argmax
        self.label = label
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)

    def __repr__(self) -> str:
        return f"PanelPolicy({self.label})"

    def distributions(self, boards: Sequence[chess.Board]) -> list[dict[chess.Move, float]]:
        return [dict(zip(*self._probabilities(board), strict=True)) for board in boards]

    def choose(self, boards: Sequence[chess.Board], rng: np.random.Generator) -> list[chess.Move]:
        return [sample(*self._probabilities(board), rng) for board in boards]  # skips building the dicts

    def _probabilities(self, board: chess.Board) -> tuple[list[chess.Move], np.ndarray]:
        moves, pi = self.panel.policies(board, self.q_source.q_values(board), self.members)
        mean = pi[0] if len(self.members) == 1 else pi.mean(axis=0) if self.weights is None else self.weights @ pi
        if self.argmax:
            mean = np.eye(1, len(moves), int(np.argmax(mean)))[0]
        return moves, mean


def player(panel: Panel, q_source: QSource, r: int) -> PanelPolicy:
    """Player r as it plays in the dump: sampling from π_r."""
    return PanelPolicy(panel, q_source, (r,), argmax=False, label=f"player({r})")


def clone(panel: Panel, q_source: QSource, r: int) -> PanelPolicy:
    """Player r at τ → 0: always its own most likely move (its quirks stay, its noise goes)."""
    return PanelPolicy(panel, q_source, (r,), argmax=True, label=f"clone({r})")


def consensus(
    panel: Panel, q_source: QSource, members: Sequence[int], weights: Sequence[float] | None = None
) -> PanelPolicy:
    """The oracle majority vote: the argmax of the members' average policy — weighted by `weights` (say, each
    player's share of the moves a model learns from: the argmax of the mixture that cross-entropy fits)."""
    label = f"consensus({len(members)} players{', weighted' if weights is not None else ''})"
    return PanelPolicy(panel, q_source, members, argmax=True, label=label, weights=weights)
