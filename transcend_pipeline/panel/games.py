"""Games between policies, under the rules a Lichess game ends by, and matchmaking by rating proximity."""

from __future__ import annotations

from dataclasses import dataclass

import chess
import numpy as np

from transcend_pipeline.panel.players import PanelConfig, QSource, player
from transcend_pipeline.panel.pool import worker_state
from transcend_pipeline.play import Rules
from transcend_pipeline.policy import Policy


@dataclass(frozen=True)
class PlayedGame:
    moves: tuple[chess.Move, ...]
    result: str  # '1-0', '0-1' or '1/2-1/2'
    termination: str  # Lichess's Termination tag: 'Normal' or 'Time forfeit'

    @property
    def score_for_white(self) -> float:
        return {"1-0": 1.0, "0-1": 0.0}.get(self.result, 0.5)


def play_game(
    white: Policy, black: Policy, q_source: QSource, config: PanelConfig, rng: np.random.Generator
) -> PlayedGame:
    """Play one game: a few random near-best opening plies, then each side's policy.

    Draws by threefold repetition and the 50-move rule are claimed at once; resignation and the ply cap are
    `Rules.of_panel(config)`'s, the rules evaluation games end by. A game adjudicated decisive at the cap is scored
    as Lichess scores a flag fall, a time forfeit.
    """
    board = chess.Board()
    rules = Rules.of_panel(config)
    losing_streak = {chess.WHITE: 0, chess.BLACK: 0}
    opening_plies = int(rng.integers(config.opening_plies[0], config.opening_plies[1] + 1))
    while True:
        if board.is_checkmate():
            return _finish(board, "0-1" if board.turn == chess.WHITE else "1-0", "Normal")
        if (
            board.is_stalemate()
            or board.is_insufficient_material()
            or board.halfmove_clock >= 100
            or board.is_repetition(3)
        ):
            return _finish(board, "1/2-1/2", "Normal")
        q = q_source.q_values(board)
        best = max(q.values())
        ending = rules.ending(board, best, losing_streak)
        if ending is not None:
            result, termination = ending
            flag_fall = termination == "adjudicated" and result != "1/2-1/2"
            return _finish(board, result, "Time forfeit" if flag_fall else "Normal")
        if board.ply() < opening_plies:
            near_best = [move for move, value in q.items() if value >= best - config.opening_tolerance]
            move = near_best[int(rng.integers(len(near_best)))]
        else:
            move = (white if board.turn == chess.WHITE else black).choose([board], rng)[0]
        board.push(move)


def play_pairs(
    seed_key: str, first_index: int, pairs: list[tuple[int, int]]
) -> list[tuple[PlayedGame, np.random.Generator]]:
    """Play consecutive (white, black) games on this panel worker, from a cleared engine.

    Game `first_index + i` draws its randomness from (panel seed, 'game', seed_key, index): the result does not
    depend on which worker played it. The game's generator is returned, for the caller's further draws.
    """
    worker = worker_state()
    worker.q.reset()
    played = []
    for offset, (white, black) in enumerate(pairs):
        rng = np.random.default_rng(worker.config.derived_seed("game", seed_key, first_index + offset))
        white_policy, black_policy = (player(worker.panel, worker.q, index) for index in (white, black))
        played.append((play_game(white_policy, black_policy, worker.q, worker.config, rng), rng))
    return played


def _finish(board: chess.Board, result: str, termination: str) -> PlayedGame:
    return PlayedGame(tuple(board.move_stack), result, termination)


def activity_weights(config: PanelConfig) -> np.ndarray:
    """How often each player starts a game: rising linearly from the best to the weakest, as weaker players play more."""
    return np.linspace(1.0, config.weak_activity, config.n_players)


def pair_by_rating(
    ratings: np.ndarray, n_games: int, rng: np.random.Generator, *, window: float, activity: np.ndarray
) -> np.ndarray:
    """(white, black) indices for `n_games` games: a player seeks a game (∝ activity), an opponent of close rating answers.

    The opponent is drawn with weight exp(−½(Δ/window)²) over the other players, so most games stay within a few
    windows of rating — what keeps a cap bucket (both players under the cap) well filled. Colours are random.
    """
    n = len(ratings)
    seekers = rng.choice(n, size=n_games, p=activity / activity.sum())
    gaps = (ratings[:, None] - ratings[None, :]) / window
    closeness = np.exp(-0.5 * gaps**2)
    np.fill_diagonal(closeness, 0.0)
    cumulative = np.cumsum(closeness / closeness.sum(axis=1, keepdims=True), axis=1)
    opponents = np.minimum((cumulative[seekers] < rng.random(n_games)[:, None]).sum(axis=1), n - 1)
    seeker_is_white = rng.random(n_games) < 0.5
    return np.where(seeker_is_white[:, None], np.c_[seekers, opponents], np.c_[opponents, seekers])


def pair_at_random(n_players: int, n_games: int, rng: np.random.Generator) -> np.ndarray:
    """(white, black) for games between uniformly drawn distinct players: the calibration round."""
    white = rng.integers(n_players, size=n_games)
    black = (white + rng.integers(1, n_players, size=n_games)) % n_players
    return np.c_[white, black]
