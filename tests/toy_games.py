"""Toy games with a learnable rule, for the training tests and benchmark (kept out of the package, so editing
them changes no checkpoint's code version)."""

from __future__ import annotations

import chess
import numpy as np

_CAPTURE_ORDER = {chess.QUEEN: 5, chess.ROOK: 4, chess.BISHOP: 3, chess.KNIGHT: 2, chess.PAWN: 1}


def greedy_capture_games(count: int, seed: int = 0, max_plies: int = 120) -> list[list[str]]:
    """Capture the most valuable piece when possible (ties broken at random), otherwise play a uniformly random
    legal move."""
    rng = np.random.default_rng(seed)
    games = []
    for _ in range(count):
        board, moves = chess.Board(), []
        while len(moves) < max_plies and not board.is_game_over(claim_draw=False):
            legal = list(board.generate_legal_moves())
            captures = [m for m in legal if board.piece_type_at(m.to_square)]
            if captures:
                best = max(_CAPTURE_ORDER[board.piece_type_at(m.to_square)] for m in captures)
                legal = [m for m in captures if _CAPTURE_ORDER[board.piece_type_at(m.to_square)] == best]
            move = legal[int(rng.integers(len(legal)))]
            moves.append(move.uci())
            board.push(move)
        games.append(moves)
    return games
