"""The UCI move vocabulary: every move any piece can make on an empty board, in a fixed order.

Tokens are absolute UCI moves (``e2e4`` is the same token for whichever side plays it), so both colours' moves share
one embedding table, as in the paper's transcripts. Castling is the king's two-square move (``e1g1``), as in UCI.
The order is deterministic (by from-square, to-square, promotion), so a token id means the same move in every run.

>>> token_of(chess.Move.from_uci("e2e4")) == token_of("e2e4")
True
>>> move_of(token_of("e7e8q"))
Move.from_uci('e7e8q')
"""

from __future__ import annotations

import chess

PAD = 0
BOS = 1
SPECIALS = ("<pad>", "<bos>")


def _all_moves() -> tuple[str, ...]:
    """Queen-like and knight moves between all square pairs, plus every pawn promotion (4 pieces, both colours)."""
    moves = set()
    for from_square in chess.SQUARES:
        for to_square in chess.SQUARES:
            knight_move = chess.BB_KNIGHT_ATTACKS[from_square] & chess.BB_SQUARES[to_square]
            if knight_move or _queen_reaches(from_square, to_square):
                moves.add(chess.Move(from_square, to_square).uci())
        rank, file = chess.square_rank(from_square), chess.square_file(from_square)
        for from_rank, to_rank in ((6, 7), (1, 0)):
            if rank != from_rank:
                continue
            for to_file in (file - 1, file, file + 1):
                if 0 <= to_file < 8:
                    for promotion in (chess.QUEEN, chess.ROOK, chess.BISHOP, chess.KNIGHT):
                        moves.add(chess.Move(from_square, chess.square(to_file, to_rank), promotion).uci())
    return tuple(sorted(moves, key=lambda uci: (chess.parse_square(uci[:2]), chess.parse_square(uci[2:4]), uci[4:])))


def _queen_reaches(from_square: int, to_square: int) -> bool:
    if from_square == to_square:
        return False
    file_delta = chess.square_file(to_square) - chess.square_file(from_square)
    rank_delta = chess.square_rank(to_square) - chess.square_rank(from_square)
    return file_delta == 0 or rank_delta == 0 or abs(file_delta) == abs(rank_delta)


MOVES: tuple[str, ...] = _all_moves()
VOCAB_SIZE = len(SPECIALS) + len(MOVES)
_TOKEN_OF = {uci: index + len(SPECIALS) for index, uci in enumerate(MOVES)}


class UnknownMoveError(KeyError):
    """Raised for a move no piece can make (e.g. ``a1b3q``, or the null move)."""


def token_of(move: chess.Move | str) -> int:
    """The token id of a move (a :class:`chess.Move` or its UCI string)."""
    uci = move if isinstance(move, str) else move.uci()
    try:
        return _TOKEN_OF[uci]
    except KeyError:
        raise UnknownMoveError(uci) from None


def move_of(token: int) -> chess.Move:
    """The move a token id stands for; special tokens have no move."""
    if not len(SPECIALS) <= token < VOCAB_SIZE:
        raise UnknownMoveError(f"token {token} is not a move")
    return chess.Move.from_uci(MOVES[token - len(SPECIALS)])
