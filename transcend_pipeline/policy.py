"""What plays: the one interface of every player (panel players, the trained model, Stockfish), and the sampling
that makes the same random draws give the same games everywhere."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import chess
import numpy as np


class Policy(ABC):
    """Anything that plays: given positions, a distribution over each one's legal moves (batched).

    The panel's players, clones and consensus, the trained model, Stockfish and random play all implement it, so
    the same game loop and matches serve them all.
    """

    @abstractmethod
    def distributions(self, boards: Sequence[chess.Board]) -> list[dict[chess.Move, float]]: ...

    def choose(self, boards: Sequence[chess.Board], rng: np.random.Generator) -> list[chess.Move]:
        """One move per position, sampled from `distributions` (an argmax policy puts all mass on one move)."""
        return [
            sample(list(distribution), np.fromiter(distribution.values(), dtype=np.float64), rng)
            for distribution in self.distributions(boards)
        ]


def sample(moves: Sequence[chess.Move], probabilities: np.ndarray, rng: np.random.Generator) -> chess.Move:
    """Inverse-CDF sampling with one uniform draw per move: the same draws give the same games everywhere."""
    if len(moves) == 1:  # a deterministic policy (Stockfish, an argmax): the draw is still made
        rng.random()
        return moves[0]
    index = int(np.searchsorted(np.cumsum(probabilities), rng.random() * probabilities.sum(), side="right"))
    return moves[min(index, len(moves) - 1)]
