"""Board planes and per-legal-move features for many positions at once, vectorised over bitboards.

Why: a policy that sees, for every legal move, what it captures, whether its destination is attacked or defended,
whether it gives check and what it leaves hanging learns in CPU minutes the tactical skill that board-only networks
do not (design §5). Everything is computed from the mover's side (the board flipped when Black is to move), so one
set of weights serves both colours.

Everything is numpy over uint64 bitboards for all positions and moves of a batch at once: set-wise attack maps
(Kogge-Stone fills for sliders) before and after each move, with the occupancy each move leaves behind.
:func:`featurise` generates the legal moves the same way (pseudo-legal moves, kept when they leave the king
unattacked, in python-chess's order), as python-chess's move generator was the largest cost of a batched model call
in play; :class:`FeatureBuilder`, which must return each position's moves as it is added, asks python-chess.

>>> features = featurise([chess.Board()])
>>> features.legal_offsets.tolist(), features.move_features.shape
([0, 20], (20, 14))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import chess
import numpy as np

from transcend_pipeline import vocab

#: Column name -> number of categories; each column is a small non-negative integer.
#: Piece types are python-chess's (1 pawn ... 6 king; 0 none); squares are seen from the mover (a1 = own left corner).
#: "attacked"/"defended" give the lowest-valued attacker's (defender's) piece type; "hanging" the highest-valued
#: piece type that is attacked and either undefended or attacked by a cheaper piece (x-rays ignored).
#: "check": 0 none, 1 the king has a flight square, 2 it has none but the moved piece can be taken, 3 neither (mate,
#: unless the check can be blocked or the checker is another piece). "material_swing": pawns won by the move (capture,
#: promotion) minus the most the opponent then wins with one capture (a one-exchange static value), clipped to ±9
#: and stored + 9. Both summarise in one number what Stockfish's shallowest search sees first, so a small model
#: needs no data to learn them from the crossed columns (design §5).
MOVE_FEATURES: dict[str, int] = {
    "piece": 7,
    "from": 64,
    "to": 64,
    "promotion": 7,
    "captured": 7,
    "to_attacked_before": 7,
    "to_attacked_after": 7,
    "to_defended_after": 7,
    "from_attacked": 7,
    "from_defended": 7,
    "check": 4,
    "own_hanging_after": 6,
    "their_hanging_after": 6,
    "material_swing": 19,
}
MATERIAL_SWING_LIMIT = 9
#: Board codes per square: 0 empty, 1-6 the mover's pawn..king, 7-12 the opponent's.
BOARD_CODES = 13
#: Per-position state columns and their category counts: castling rights as 4 bits (own short, own long, their
#: short, their long), en-passant file + 1 (0 = none), side to move (0 White, 1 Black).
STATE_FEATURES: dict[str, int] = {"castling": 16, "en_passant": 9, "side_to_move": 2}

_U = np.uint64
_FULL = _U(0xFFFF_FFFF_FFFF_FFFF)
_NOT_A = _U(0xFEFE_FEFE_FEFE_FEFE)
_NOT_H = _U(0x7F7F_7F7F_7F7F_7F7F)
_NOT_AB = _U(0xFCFC_FCFC_FCFC_FCFC)
_NOT_GH = _U(0x3F3F_3F3F_3F3F_3F3F)
_BISHOP_DIRECTIONS = ((9, _NOT_A), (7, _NOT_H), (-7, _NOT_A), (-9, _NOT_H))
_ROOK_DIRECTIONS = ((8, _FULL), (-8, _FULL), (1, _NOT_A), (-1, _NOT_H))
_SLIDER_DIRECTIONS = (_BISHOP_DIRECTIONS, _ROOK_DIRECTIONS)
#: Castling from the mover's side: (rook square, squares that must be empty, squares the king passes, king's target).
_CASTLING = (
    (chess.H1, _U(chess.BB_F1 | chess.BB_G1), _U(chess.BB_E1 | chess.BB_F1 | chess.BB_G1), chess.G1),
    (chess.A1, _U(chess.BB_B1 | chess.BB_C1 | chess.BB_D1), _U(chess.BB_E1 | chess.BB_D1 | chess.BB_C1), chess.C1),
)
#: Pawn move kinds in :func:`_pseudo_legal_moves`: captures to the left and right, single and double pushes, en
#: passant to the left and right; how far behind the target the pawn stands, and python-chess's generation group.
_PAWN_OFFSETS = np.array([7, 9, 8, 16, 7, 9])
_PAWN_GROUPS = np.array([3, 3, 4, 5, 6, 6])
_PIECE_VALUES = np.array([0, 1, 3, 3, 5, 9], dtype=np.int8)  # by piece type; the king is never "hanging"
_SQUARE_BITS = np.array([1 << square for square in range(64)], dtype=np.uint64)
_PIECE_CODES = np.arange(1, 13, dtype=np.uint8)[:, None, None]  # board code of each of _board_codes' 12 bitboards


def _token_table() -> np.ndarray:
    """Vocabulary token per (from, to, promotion) in absolute squares; -1 where no piece can move so."""
    table = np.full((64, 64, 7), -1, dtype=np.int16)
    for uci in vocab.MOVES:
        move = chess.Move.from_uci(uci)
        table[move.from_square, move.to_square, move.promotion or 0] = vocab.token_of(uci)
    return table


_TOKENS = _token_table()


def _move_objects() -> np.ndarray:
    """One shared ``chess.Move`` per (from, to, promotion) of the vocabulary, so featurising creates none."""
    table = np.full((64, 64, 7), None, dtype=object)
    for uci in vocab.MOVES:
        move = chess.Move.from_uci(uci)
        table[move.from_square, move.to_square, move.promotion or 0] = move
    return table


_MOVE_OBJECTS = _move_objects()
_KNIGHT_ATTACKS = np.array(chess.BB_KNIGHT_ATTACKS, dtype=np.uint64)
_KING_ATTACKS = np.array(chess.BB_KING_ATTACKS, dtype=np.uint64)


@dataclass(frozen=True)
class PositionFeatures:
    """Features of N positions and their M legal moves (ragged: position i owns moves legal_offsets[i:i+2])."""

    boards: np.ndarray  # int8 [N, 64] board codes, squares from the mover's side
    state: np.ndarray  # int8 [N, len(STATE_FEATURES)]
    legal_offsets: np.ndarray  # int64 [N + 1]
    legal_tokens: np.ndarray  # int16 [M] absolute UCI vocabulary tokens
    move_features: np.ndarray  # uint8 [M, len(MOVE_FEATURES)]
    moves: list[list[chess.Move]]  # the legal moves per position, in the order of the rows above


def featurise(boards: Iterable[chess.Board]) -> PositionFeatures:
    """Features for the given positions (standard chess; the boards are read, not changed), with their legal moves
    generated here, vectorised: the same moves in the same order as ``board.legal_moves`` (tested)."""
    return featurise_bitboards([position_bitboards(board) for board in boards])


def featurise_bitboards(rows: list[list[int]]) -> PositionFeatures:
    """:func:`featurise` of positions read with :func:`position_bitboards` or followed with :func:`bitboards_after`
    (the model's inputs keep each game's, so a model call reads no board)."""
    us, them, castling, ep_bits, black = _oriented_bitboards(rows)
    boards_codes = _board_codes(us, them)
    maps = _attack_maps(us, them, _occupied(us, them))
    moves = _pseudo_legal_moves(us, them, maps[1], boards_codes, castling, ep_bits)
    position, from_sq, to_sq, promotion, group = moves
    columns, legal = _move_features(us, them, maps, boards_codes, ep_bits, position, from_sq, to_sq, promotion)
    flip = np.where(black[position], 56, 0)
    from_abs, to_abs = from_sq ^ flip, to_sq ^ flip
    # python-chess's order: (king moves first when in check), pieces, castling, pawn captures, single and double
    # pushes, en passant; within each, from-square and to-square descending and promotions queen to knight.
    # One integer key sorted once is ten times faster than `np.lexsort` over the five columns, in the same order.
    order = np.argsort(
        ((position * 8 + group) * 4096 + (63 - from_abs) * 64 + (63 - to_abs)) * 8 - promotion, kind="stable"
    )
    order = order[legal[order]]
    position, from_abs, to_abs, promotion = position[order], from_abs[order], to_abs[order], promotion[order]
    offsets = np.searchsorted(position, np.arange(len(black) + 1))
    flat = _MOVE_OBJECTS[from_abs, to_abs, promotion].tolist()
    return PositionFeatures(
        boards=boards_codes,
        state=_state(castling, ep_bits, black),
        legal_offsets=offsets.astype(np.int64),
        legal_tokens=_TOKENS[from_abs, to_abs, promotion],
        move_features=columns[order],
        moves=[flat[start:end] for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)],
    )


class FeatureBuilder:
    """Collects positions one by one (cheap Python reads of the bitboards) and featurises them all in one go.

    The shard builder adds each position of a game while replaying it, so no board is ever copied.
    """

    def __init__(self) -> None:
        self._bitboards: list[list[int]] = []
        self._moves: list[list[chess.Move]] = []

    def add(self, board: chess.Board) -> list[chess.Move]:
        """Record a position; returns its legal moves in feature order."""
        self._bitboards.append(position_bitboards(board))
        moves = list(board.generate_legal_moves())
        self._moves.append(moves)
        return moves

    def build(self) -> PositionFeatures:
        us, them, castling, ep_bits, black = _oriented_bitboards(self._bitboards)
        lengths = np.array([len(moves) for moves in self._moves], dtype=np.int64)
        flat = [(m.from_square, m.to_square, m.promotion or 0) for moves in self._moves for m in moves]
        absolute = np.array(flat, dtype=np.int64).reshape(-1, 3)
        position = np.repeat(np.arange(len(self._moves)), lengths)
        flip = np.where(black[position], 56, 0)
        from_sq, to_sq, promotion = absolute[:, 0] ^ flip, absolute[:, 1] ^ flip, absolute[:, 2]
        boards = _board_codes(us, them)
        maps = _attack_maps(us, them, _occupied(us, them))
        return PositionFeatures(
            boards=boards,
            state=_state(castling, ep_bits, black),
            legal_offsets=np.concatenate([[0], np.cumsum(lengths)]),
            legal_tokens=_TOKENS[absolute[:, 0], absolute[:, 1], promotion],
            move_features=_move_features(us, them, maps, boards, ep_bits, position, from_sq, to_sq, promotion)[0],
            moves=self._moves,
        )


def board_planes(boards: Iterable[chess.Board]) -> tuple[np.ndarray, np.ndarray]:
    """Only the board codes [N, 64] and state [N, 3] (no legal moves): the cheap per-ply input of a game's history."""
    return planes_of_bitboards([position_bitboards(board) for board in boards])


def planes_of_bitboards(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`board_planes` of positions read with :func:`position_bitboards` (a replayed game needs no copies)."""
    us, them, castling, ep_bits, black = _oriented_bitboards(rows)
    return _board_codes(us, them), _state(castling, ep_bits, black)


def position_bitboards(board: chess.Board) -> list[int]:
    """The integers every feature of a position is computed from: each side's pieces by type, castling rights,
    the en-passant square and the side to move."""
    us, them = board.occupied_co[board.turn], board.occupied_co[not board.turn]
    by_type = (board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings)
    ep = board.ep_square
    return (
        [bb & us for bb in by_type]
        + [bb & them for bb in by_type]
        + [board.castling_rights, 0 if ep is None else 1 << ep, int(board.turn == chess.BLACK)]
    )


def bitboards_after(row: list[int], move: chess.Move) -> list[int]:
    """:func:`position_bitboards` of the position after a legal ``move`` in the position ``row`` describes, as
    ``board.push`` would leave it (its raw castling rights and en-passant square included), without a board: a game's
    history is read ply by ply with a few integer operations instead of a python-chess replay (tested against it)."""
    us, them = row[:6], row[6:12]
    black = row[14]
    from_square, to_square = move.from_square, move.to_square
    from_bb, to_bb = 1 << from_square, 1 << to_square
    piece = 0
    while not us[piece] & from_bb:
        piece += 1
    us[piece] ^= from_bb
    us[move.promotion - 1 if move.promotion else piece] |= to_bb
    if (them[0] | them[1] | them[2] | them[3] | them[4] | them[5]) & to_bb:
        them = [bitboard & ~to_bb for bitboard in them]
    elif piece == chess.PAWN - 1 and to_bb == row[13]:  # en passant: the pawn taken stands behind its square
        them[0] &= ~(1 << (to_square + 8 if black else to_square - 8))
    castling = row[12] & ~from_bb & ~to_bb
    ep = 0
    if piece == chess.PAWN - 1 and abs(to_square - from_square) == 16:
        ep = 1 << ((from_square + to_square) // 2)
    elif piece == chess.KING - 1:
        castling &= ~(chess.BB_RANK_8 if black else chess.BB_RANK_1)
        if abs(to_square - from_square) == 2:  # the rook jumps over the king
            rank = from_square & ~7
            rook_from, rook_to = (rank + 7, rank + 5) if to_square > from_square else (rank, rank + 3)
            us[chess.ROOK - 1] ^= (1 << rook_from) | (1 << rook_to)
    return them + us + [castling, ep, 1 - black]


def _oriented_bitboards(rows: list[list[int]]) -> tuple[np.ndarray, ...]:
    """Own and opponent piece bitboards [6, N] each, castling rooks and en-passant bits, flipped for Black."""
    raw = np.array(rows, dtype=np.uint64).reshape(len(rows), 15)
    black = raw[:, 14].astype(bool)
    pieces = raw[:, :14].copy()
    pieces[black] = pieces[black].byteswap()  # a vertical flip: ranks are bytes
    return pieces[:, :6].T.copy(), pieces[:, 6:12].T.copy(), pieces[:, 12], pieces[:, 13], black


def _state(castling: np.ndarray, ep_bits: np.ndarray, black: np.ndarray) -> np.ndarray:
    ep_file = np.where(ep_bits != 0, np.bitwise_count(ep_bits - _U(1)) % 8 + 1, 0)  # index of the single bit
    return np.stack([_castling_code(castling), ep_file, black.astype(np.int64)], axis=1).astype(np.int8)


def _board_codes(us: np.ndarray, them: np.ndarray) -> np.ndarray:
    pieces = np.concatenate([us, them]).astype("<u8")  # [12, N]
    bits = np.unpackbits(pieces.view(np.uint8).reshape(12, -1, 8), axis=2, bitorder="little")  # [12, N, 64]
    bits *= _PIECE_CODES
    return bits.sum(axis=0, dtype=np.int8)


def _castling_code(rights: np.ndarray) -> np.ndarray:
    """4-bit code of the (flipped) castling-rook bitboard: own h1, own a1, their h8, their a8."""
    squares = (chess.H1, chess.A1, chess.H8, chess.A8)
    return sum(((rights >> _U(square)) & _U(1)).astype(np.int64) << bit for bit, square in enumerate(squares))


def _shift(bitboards: np.ndarray, amount: int) -> np.ndarray:
    return bitboards << _U(amount) if amount > 0 else bitboards >> _U(-amount)


def _slide(sources: np.ndarray, empty: np.ndarray, directions: tuple) -> np.ndarray:
    """Squares attacked by sliders on `sources` along `directions` (Kogge-Stone occluded fill, set-wise)."""
    attacks = np.zeros_like(sources)
    for amount, mask in directions:
        generators, open_squares = sources, empty & mask
        for step in (amount, 2 * amount, 4 * amount):
            generators = generators | (open_squares & _shift(generators, step))
            open_squares = open_squares & _shift(open_squares, step)
        attacks |= _shift(generators, amount) & mask
    return attacks


def _attack_maps(us: np.ndarray, them: np.ndarray, occupied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[6, K] squares attacked by each piece type of the mover (whose pawns capture north) and of the opponent.
    Both sides' sliders share one fill per direction set: the number of numpy calls is what a small batch pays."""
    pawns, knights, bishops, rooks, queens, kings = np.stack([us, them], axis=1)  # each [2 sides, K]
    north = ((pawns[0] << _U(9)) & _NOT_A) | ((pawns[0] << _U(7)) & _NOT_H)
    south = ((pawns[1] >> _U(7)) & _NOT_A) | ((pawns[1] >> _U(9)) & _NOT_H)
    one = ((knights >> _U(1)) & _NOT_H) | ((knights << _U(1)) & _NOT_A)
    two = ((knights >> _U(2)) & _NOT_GH) | ((knights << _U(2)) & _NOT_AB)
    knight_attacks = (one << _U(16)) | (one >> _U(16)) | (two << _U(8)) | (two >> _U(8))
    sideways = ((kings << _U(1)) & _NOT_A) | ((kings >> _U(1)) & _NOT_H)
    row = kings | sideways
    king_attacks = sideways | (row << _U(8)) | (row >> _U(8))
    empty = ~occupied
    diagonal = _slide(np.stack([bishops, queens]), empty, _BISHOP_DIRECTIONS)
    straight = _slide(np.stack([rooks, queens]), empty, _ROOK_DIRECTIONS)
    pawn_attacks = np.stack([north, south])
    maps = np.stack([pawn_attacks, knight_attacks, diagonal[0], straight[0], diagonal[1] | straight[1], king_attacks])
    return maps[:, 0], maps[:, 1]


def _lowest_attacker(maps: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Piece type (1-6) of the cheapest attacker of each square, 0 if none."""
    hits = (maps & _SQUARE_BITS[squares]) != 0
    return np.where(hits.any(axis=0), hits.argmax(axis=0) + 1, 0)


def _highest_hanging(pieces: np.ndarray, own_maps: np.ndarray, enemy_maps: np.ndarray) -> np.ndarray:
    """Piece type (1-5) of the most valuable piece attacked and undefended or attacked by a cheaper piece."""
    attacked = np.bitwise_or.reduce(enemy_maps, axis=0)
    undefended = ~np.bitwise_or.reduce(own_maps, axis=0)
    hanging = []
    for piece_index in range(5):
        cheaper = _PIECE_VALUES[1:6] < _PIECE_VALUES[piece_index + 1]
        cheaper_attacks = np.bitwise_or.reduce(enemy_maps[:5][cheaper], axis=0) if cheaper.any() else _U(0)
        hanging.append((pieces[piece_index] & attacked & (undefended | cheaper_attacks)) != 0)
    hanging = np.array(hanging)[::-1]
    return np.where(hanging.any(axis=0), 5 - hanging.argmax(axis=0), 0)


def _worst_capture(victims: np.ndarray, victim_maps: np.ndarray, attacker_maps: np.ndarray) -> np.ndarray:
    """Pawns the side to move wins with its best single capture of a `victims` piece: the piece's value if it is
    undefended, else what it exceeds its cheapest attacker by (x-rays and pins ignored; the king is never taken)."""
    defended = np.bitwise_or.reduce(victim_maps, axis=0)
    attacked = np.bitwise_or.reduce(attacker_maps, axis=0)
    worst = np.zeros(victims.shape[1], dtype=np.int64)
    for piece_index in range(5):
        value = int(_PIECE_VALUES[piece_index + 1])
        pieces = victims[piece_index]
        worst = np.where((pieces & attacked & ~defended) != 0, np.maximum(worst, value), worst)
        for attacker_index in range(5):
            gain = value - int(_PIECE_VALUES[attacker_index + 1])
            if gain > 0:
                hit = (pieces & defended & attacker_maps[attacker_index]) != 0
                worst = np.where(hit, np.maximum(worst, gain), worst)
    return worst


def _check_kind(gives_check, us_after, them_after, occupied_after, to_attacked_after, to_defended_after) -> np.ndarray:
    """The "check" column: 0 none, 1 the checked king has a flight square, 2 none but the moved piece can be taken
    (by a piece other than the king, or by the king when undefended), 3 neither. Computed for the checks only."""
    kind = gives_check.astype(np.int64)
    (checks,) = np.nonzero(gives_check)
    if not len(checks):
        return kind
    king = them_after[chess.KING - 1, checks]
    without_king = them_after[:, checks].copy()
    without_king[chess.KING - 1] = 0
    # Our attacks as if their king were gone: it cannot step back along the line of a sliding checker.
    our_attacks, _ = _attack_maps(us_after[:, checks], without_king, occupied_after[checks] & ~king)
    king_square = np.bitwise_count(king - _U(1)).astype(np.intp)
    their_pieces = np.bitwise_or.reduce(them_after[:, checks], axis=0)
    flights = _KING_ATTACKS[king_square] & ~their_pieces & ~np.bitwise_or.reduce(our_attacks, axis=0)
    taker = to_attacked_after[checks]
    takeable = ((taker > 0) & (taker < chess.KING)) | ((taker == chess.KING) & (to_defended_after[checks] == 0))
    kind[checks] = np.where(flights != 0, 1, np.where(takeable, 2, 3))
    return kind


def _occupied(us: np.ndarray, them: np.ndarray) -> np.ndarray:
    return np.bitwise_or.reduce(us, axis=0) | np.bitwise_or.reduce(them, axis=0)


def _squares_of(bitboards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, square) of every set bit of a uint64 array, by row then square ascending."""
    bits = np.unpackbits(bitboards.astype("<u8").view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    return np.nonzero(bits.reshape(len(bitboards), 64))


def _pseudo_legal_moves(us, them, their_maps, boards, castling, ep_bits) -> tuple[np.ndarray, ...]:
    """Every pseudo-legal move of each position, seen from the mover (who moves north): position, from, to,
    promotion and python-chess's generation group (0 king moves when in check, 1 other pieces' moves, 2 castling,
    3 pawn captures, 4 single and 5 double pushes, 6 en passant). Castling is checked in full here (path empty and
    not attacked); the rest is legal when it leaves the king unattacked, which :func:`_move_features` reports."""
    ours, theirs = np.bitwise_or.reduce(us, axis=0), np.bitwise_or.reduce(them, axis=0)
    occupied = ours | theirs
    empty = ~occupied
    attacked = np.bitwise_or.reduce(their_maps, axis=0)
    in_check = (attacked & us[chess.KING - 1]) != 0

    # Knights, bishops, rooks, queens and the king, each piece on its own.
    position, square = np.nonzero((boards >= chess.KNIGHT) & (boards <= chess.KING))
    piece = boards[position, square]
    single = _SQUARE_BITS[square]
    diagonal, straight = (_slide(single, empty[position], directions) for directions in _SLIDER_DIRECTIONS)
    targets = (
        np.select(
            [piece == chess.KNIGHT, piece == chess.BISHOP, piece == chess.ROOK, piece == chess.QUEEN],
            [_KNIGHT_ATTACKS[square], diagonal, straight, diagonal | straight],
            _KING_ATTACKS[square],
        )
        & ~ours[position]
    )
    row, to = _squares_of(targets)
    group = np.where((piece[row] == chess.KING) & in_check[position[row]], 0, 1)
    moves = [(position[row], square[row], to, group)]

    # Castling: the rook and king at home with the right, the squares between empty, the king's path not attacked.
    home = (us[chess.KING - 1] & _SQUARE_BITS[chess.E1]) != 0
    for rook, between, path, king_to in _CASTLING:
        rook_bit = _SQUARE_BITS[rook]
        can = home & ((castling & us[chess.ROOK - 1] & rook_bit) != 0) & ((occupied & between | attacked & path) == 0)
        (where,) = np.nonzero(can)
        moves.append((where, np.full_like(where, chess.E1), np.full_like(where, king_to), np.full_like(where, 2)))

    # Pawns: captures, pushes and en passant, each kind with its from-square a fixed distance behind.
    pawns = us[chess.PAWN - 1]
    single_push = (pawns << _U(8)) & empty
    left, right = (pawns << _U(7)) & _NOT_H, (pawns << _U(9)) & _NOT_A
    double_push = ((single_push & _U(chess.BB_RANK_3)) << _U(8)) & empty
    kinds = np.stack([left & theirs, right & theirs, single_push, double_push, left & ep_bits, right & ep_bits])
    row, to = _squares_of(kinds.reshape(-1))
    kind, position = np.divmod(row, len(pawns))
    pawn_moves = (position, to - _PAWN_OFFSETS[kind], to, _PAWN_GROUPS[kind])
    promoting = to >= chess.A8
    repeats = np.where(promoting, 4, 1)
    first = np.repeat(np.cumsum(repeats) - repeats, repeats)
    promotion = np.where(np.repeat(promoting, repeats), chess.QUEEN - (np.arange(repeats.sum()) - first), 0)
    moves.append(tuple(np.repeat(column, repeats) for column in pawn_moves))

    position, from_sq, to_sq, group = (np.concatenate(column).astype(np.int64) for column in zip(*moves, strict=True))
    promotion = np.concatenate([np.zeros(len(position) - len(promotion), dtype=np.int64), promotion])
    return position, from_sq, to_sq, promotion, group


def _move_features(us, them, maps, boards, ep_bits, position, from_sq, to_sq, promotion) -> tuple[np.ndarray, ...]:
    """The feature columns of each (pseudo-legal) move, and whether it is legal (leaves its king unattacked);
    ``maps`` are both sides' attack maps before the moves (:func:`_attack_maps`)."""
    our_maps, their_maps = maps
    moves = np.arange(len(position))
    piece = boards[position, from_sq].astype(np.int64)
    target = boards[position, to_sq].astype(np.int64)
    en_passant = (piece == chess.PAWN) & ((_SQUARE_BITS[to_sq] & ep_bits[position]) != 0)
    captured = np.where(target > 6, target - 6, np.where(en_passant, chess.PAWN, 0))

    # Bitboards after each move: the mover leaves `from` (promoting if so), the captured piece (en passant: the
    # pawn behind `to`) disappears, and castling moves the rook too.
    us_after, them_after = us[:, position], them[:, position]
    from_bits, to_bits = _SQUARE_BITS[from_sq], _SQUARE_BITS[to_sq]
    us_after[piece - 1, moves] ^= from_bits
    us_after[np.where(promotion > 0, promotion, piece) - 1, moves] |= to_bits
    captured_square = np.where(en_passant, to_sq - 8, to_sq)
    them_after[np.maximum(captured, 1) - 1, moves] &= ~np.where(captured > 0, _SQUARE_BITS[captured_square], _U(0))
    castles = (piece == chess.KING) & (np.abs(to_sq - from_sq) == 2)
    rook_jump = np.where(to_sq > from_sq, _SQUARE_BITS[chess.H1] | _SQUARE_BITS[chess.F1], 0)
    rook_jump = np.where(to_sq < from_sq, _SQUARE_BITS[chess.A1] | _SQUARE_BITS[chess.D1], rook_jump).astype(np.uint64)
    us_after[chess.ROOK - 1] ^= np.where(castles, rook_jump, _U(0))
    occupied_after = _occupied(us_after, them_after)
    our_after, their_after = _attack_maps(us_after, them_after, occupied_after)

    their_king = them_after[chess.KING - 1]
    gives_check = (np.bitwise_or.reduce(our_after, axis=0) & their_king) != 0
    legal = (np.bitwise_or.reduce(their_after, axis=0) & us_after[chess.KING - 1]) == 0
    to_attacked_after, to_defended_after = _lowest_attacker(their_after, to_sq), _lowest_attacker(our_after, to_sq)
    won = _PIECE_VALUES[captured].astype(np.int64) + np.where(promotion > 0, _PIECE_VALUES[promotion] - 1, 0)
    swing = np.clip(won - _worst_capture(us_after, our_after, their_after), -MATERIAL_SWING_LIMIT, MATERIAL_SWING_LIMIT)
    their_maps_before = their_maps[:, position]
    columns = [
        piece,
        from_sq,
        to_sq,
        promotion,
        captured,
        _lowest_attacker(their_maps_before, to_sq),
        to_attacked_after,
        to_defended_after,
        _lowest_attacker(their_maps_before, from_sq),
        _lowest_attacker(our_maps[:, position], from_sq),
        _check_kind(gives_check, us_after, them_after, occupied_after, to_attacked_after, to_defended_after),
        _highest_hanging(us_after, our_after, their_after),
        _highest_hanging(them_after, their_after, our_after),
        swing + MATERIAL_SWING_LIMIT,
    ]
    return np.stack(columns, axis=1).astype(np.uint8).reshape(len(position), len(MOVE_FEATURES)), legal
