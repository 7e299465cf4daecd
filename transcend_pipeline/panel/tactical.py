"""A learnable shared skill: Q from material and exchanges, one ply deep, in pure Python (`q_source='tactical'`).

Stockfish's Q carries a neural evaluation that a small model cannot learn in CPU minutes; this one is built from
exactly what a legal-move scorer sees per move — the piece, what it captures or promotes to, whether the
destination is attacked or defended, whether it gives check — plus what the move leaves en prise. The players'
quirks and the consensus work the same on either Q; the dump's games are then tactically clean but positionally
naive, which is the world a small model can learn.
"""

from __future__ import annotations

import chess
import chess.polyglot
import numpy as np

from transcend_pipeline.ratings import win_probability

PIECE_CP = (0, 100, 300, 310, 500, 900, 0)  # by chess.PIECE_TYPES index; the king is never captured
MATE_CP = 10_000
CHECK_CP = 15
CASTLE_CP = 40
CENTRE_CP = 8  # per step towards the centre, for pieces other than the king: development, not strategy
CENTRALITY = tuple(
    3 - max(abs(chess.square_file(s) * 2 - 7), abs(chess.square_rank(s) * 2 - 7)) // 2 for s in chess.SQUARES
)


class TacticalQ:
    """Each move's value as the mover's expected score: the material balance, plus what the move wins now, minus the
    worst exchange it then allows (so a side a queen down resigns, as with Stockfish's Q)."""

    def __init__(self) -> None:
        self._memo: dict[int, dict[chess.Move, float]] = {}

    def q_values(self, board: chess.Board) -> dict[chess.Move, float]:
        key = chess.polyglot.zobrist_hash(board)
        values = self._memo.get(key)
        if values is None:
            moves = list(board.legal_moves)
            standing = material_balance(board)
            centipawns = np.array([standing + move_centipawns(board, move) for move in moves], dtype=np.float64)
            values = self._memo[key] = dict(zip(moves, win_probability(centipawns).tolist(), strict=True))
        return values

    def reset(self) -> None:
        self._memo.clear()


def material_balance(board: chess.Board) -> int:
    """The mover's material minus the opponent's, in centipawns: where the game stands before the move."""
    return sum(
        PIECE_CP[piece] * (len(board.pieces(piece, board.turn)) - len(board.pieces(piece, not board.turn)))
        for piece in chess.PIECE_TYPES
    )


def move_centipawns(board: chess.Board, move: chess.Move) -> float:
    """Material won by `move`, minus the opponent's best single capture afterwards, plus small development terms."""
    mover = board.turn
    moved = board.piece_type_at(move.from_square)
    won = PIECE_CP[chess.PAWN] if board.is_en_passant(move) else PIECE_CP[board.piece_type_at(move.to_square) or 0]
    if move.promotion:
        won += PIECE_CP[move.promotion] - PIECE_CP[chess.PAWN]
    style = 0.0
    if board.is_castling(move):
        style += CASTLE_CP
    elif moved != chess.KING:
        style += CENTRE_CP * (CENTRALITY[move.to_square] - CENTRALITY[move.from_square])
    board.push(move)
    try:
        if board.is_checkmate():
            return MATE_CP
        if board.is_check():
            style += CHECK_CP
        return won - _worst_capture(board, mover) + style
    finally:
        board.pop()


def _worst_capture(board: chess.Board, victim: chess.Color) -> int:
    """The most material the side to move can win with one capture: a piece's value if it is undefended, else the
    value it exceeds its cheapest attacker by (a one-exchange static evaluation)."""
    attacked = 0
    for square in chess.scan_forward(board.occupied_co[not victim]):
        attacked |= board.attacks_mask(square)
    worst = 0
    for square in chess.scan_forward(attacked & board.occupied_co[victim] & ~board.kings):
        value = PIECE_CP[board.piece_type_at(square)]
        if value <= worst:
            continue
        attackers = board.attackers_mask(not victim, square)
        cheapest = min(PIECE_CP[board.piece_type_at(a)] or MATE_CP for a in chess.scan_forward(attackers))
        defended = bool(board.attackers_mask(victim, square))
        worst = max(worst, value if not defended else value - cheapest)
    return worst
