"""The oracle property: the consensus of diverse players beats the best of them (and the best one's clone).

Head-to-head matches between panel policies, played on the same worker pool as the dumps, with colours
alternating and each game's randomness drawn from (seed, label, game index), so a match is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from transcend_pipeline.panel.games import play_game
from transcend_pipeline.panel.players import PanelConfig, PanelPolicy
from transcend_pipeline.panel.pool import chunked, worker_pool, worker_state
from transcend_pipeline.ratings import elo_difference_interval


@dataclass(frozen=True)
class Contender:
    """A panel policy by description (picklable, built inside each worker): members and argmax or sampling."""

    label: str
    members: tuple[int, ...]
    argmax: bool

    @classmethod
    def player(cls, r: int) -> Contender:
        return cls(f"player({r})", (r,), False)

    @classmethod
    def clone(cls, r: int) -> Contender:
        return cls(f"clone({r})", (r,), True)

    @classmethod
    def consensus(cls, members: Sequence[int]) -> Contender:
        members = tuple(members)
        return cls(
            f"consensus({members[0]}..{members[-1]})" if len(members) > 1 else f"consensus({members})", members, True
        )


@dataclass(frozen=True)
class MatchResult:
    """`first`'s score against `second`, with the Elo difference it implies and its 95% interval."""

    first: str
    second: str
    wins: int
    draws: int
    losses: int

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses

    @property
    def elo(self) -> tuple[float, float, float]:
        return elo_difference_interval(self.wins, self.draws, self.losses)

    def __str__(self) -> str:
        elo, low, high = self.elo
        return (
            f"{self.first} vs {self.second}: {elo:+.0f} Elo [{low:+.0f}, {high:+.0f}] "
            f"over {self.games} games (+{self.wins} ={self.draws} -{self.losses})"
        )


def head_to_head(
    config: PanelConfig,
    first: Contender,
    second: Contender,
    games: int,
    *,
    stockfish_path: str,
    workers: int = 2,
    seed: int = 0,
) -> MatchResult:
    """Play `games` games between two panel policies (`first` is White in the even-numbered games)."""
    indices = list(range(games))
    chunks = list(chunked(indices, config.chunk_games))
    scores: list[float] = []
    with worker_pool(config, stockfish_path, workers) as run:
        for chunk_scores in run(
            _play_match_chunk, [first] * len(chunks), [second] * len(chunks), [seed] * len(chunks), chunks
        ):
            scores.extend(chunk_scores)
    wins = sum(score == 1.0 for score in scores)
    draws = sum(score == 0.5 for score in scores)
    return MatchResult(first.label, second.label, wins, draws, len(scores) - wins - draws)


def _play_match_chunk(first: Contender, second: Contender, seed: int, indices: list[int]) -> list[float]:
    """`first`'s score in each game of the chunk."""
    worker = worker_state()
    worker.q.reset()
    policies = [PanelPolicy(worker.panel, worker.q, c.members, argmax=c.argmax, label=c.label) for c in (first, second)]
    scores = []
    for index in indices:
        rng = np.random.default_rng(worker.config.derived_seed("match", seed, first.label, second.label, index))
        white, black = policies if index % 2 == 0 else policies[::-1]
        score_for_white = play_game(white, black, worker.q, worker.config, rng).score_for_white
        scores.append(score_for_white if index % 2 == 0 else 1.0 - score_for_white)
    return scores
