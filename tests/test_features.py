"""The move vocabulary and the vectorised features, checked against python-chess move by move."""

from __future__ import annotations

import random

import chess
import numpy as np
import pytest

from transcend_pipeline import vocab
from transcend_pipeline.features import (
    BOARD_CODES,
    MOVE_FEATURES,
    FeatureBuilder,
    bitboards_after,
    board_planes,
    featurise,
    position_bitboards,
)

VALUES = {chess.PAWN: 1, chess.KNIGHT: 3, chess.BISHOP: 3, chess.ROOK: 5, chess.QUEEN: 9}


def random_positions(count_games: int, seed: int) -> list[chess.Board]:
    """Positions from random games that favour captures, promotions and castling, so rare moves occur."""
    rng = random.Random(seed)
    positions = []
    for _ in range(count_games):
        board = chess.Board()
        for _ in range(rng.randint(10, 160)):
            moves = list(board.legal_moves)
            if not moves:
                break
            special = [m for m in moves if board.is_capture(m) or m.promotion or board.is_castling(m)]
            board.push(rng.choice(special if special and rng.random() < 0.5 else moves))
            positions.append(board.copy())
    return positions


@pytest.fixture(scope="module")
def positions() -> list[chess.Board]:
    return random_positions(24, seed=7)


def lowest_attacker(board: chess.Board, color: chess.Color, square: int) -> int:
    attackers = board.attackers_mask(color, square)
    return next((piece for piece in range(1, 7) if attackers & board.pieces_mask(piece, color)), 0)


def highest_hanging(board: chess.Board, color: chess.Color) -> int:
    hanging = 0
    for piece in range(1, 6):
        for square in board.pieces(piece, color):
            attacker = lowest_attacker(board, not color, square)
            defended = board.attackers_mask(color, square)
            if attacker and (not defended or VALUES.get(attacker, 99) < VALUES[piece]):
                hanging = max(hanging, piece)
    return hanging


def worst_capture(board: chess.Board, victim: chess.Color) -> int:
    """Pawns the side to move wins with one capture of a `victim` piece (one exchange; the king is never taken)."""
    worst = 0
    for piece in range(1, 6):
        for square in board.pieces(piece, victim):
            attacker = lowest_attacker(board, not victim, square)
            if attacker and not board.attackers_mask(victim, square):
                worst = max(worst, VALUES[piece])
            elif attacker and attacker != chess.KING:
                worst = max(worst, VALUES[piece] - VALUES[attacker])
    return worst


def check_kind(board: chess.Board, move: chess.Move) -> int:
    """On the board after `move`: 0 no check, 1 the king can step out, 2 it cannot but the moved piece can be taken."""
    if not board.is_check():
        return 0
    king = board.king(board.turn)
    without_king = board.copy(stack=False)
    without_king.remove_piece_at(king)
    for square in chess.SquareSet(chess.BB_KING_ATTACKS[king]):
        if not board.occupied_co[board.turn] & chess.BB_SQUARES[square] and not without_king.attackers_mask(
            not board.turn, square
        ):
            return 1
    taker = lowest_attacker(board, board.turn, move.to_square)
    takeable = taker and (taker != chess.KING or not board.attackers_mask(not board.turn, move.to_square))
    return 2 if takeable else 3


def reference_features(board: chess.Board) -> list[list[int]]:
    """The slow, obvious definition of every feature column, one python-chess call at a time."""
    us, flip = board.turn, (0 if board.turn == chess.WHITE else 56)
    rows = []
    for move in board.legal_moves:
        captured = chess.PAWN if board.is_en_passant(move) else (board.piece_type_at(move.to_square) or 0)
        row = [board.piece_type_at(move.from_square), move.from_square ^ flip, move.to_square ^ flip]
        row += [move.promotion or 0, captured, lowest_attacker(board, not us, move.to_square)]
        from_attacked = lowest_attacker(board, not us, move.from_square)
        from_defended = lowest_attacker(board, us, move.from_square)
        won = VALUES.get(captured, 0) + (VALUES[move.promotion] - 1 if move.promotion else 0)
        board.push(move)
        row += [lowest_attacker(board, not us, move.to_square), lowest_attacker(board, us, move.to_square)]
        row += [from_attacked, from_defended, check_kind(board, move)]
        row += [highest_hanging(board, us), highest_hanging(board, not us)]
        row += [min(max(won - worst_capture(board, us), -9), 9) + 9]
        board.pop()
        rows.append(row)
    return rows


def test_vocabulary_is_deterministic_and_round_trips() -> None:
    assert len(vocab.MOVES) == 1968 and len(set(vocab.MOVES)) == 1968
    assert vocab.VOCAB_SIZE - len(vocab.SPECIALS) == 1968
    assert vocab.MOVES[:3] == ("a1b1", "a1c1", "a1d1")
    for token in range(len(vocab.SPECIALS), vocab.VOCAB_SIZE):
        assert vocab.token_of(vocab.move_of(token)) == token
    with pytest.raises(vocab.UnknownMoveError):
        vocab.token_of("a1b3q")
    with pytest.raises(vocab.UnknownMoveError):
        vocab.move_of(vocab.BOS)


def test_vocabulary_covers_every_legal_move(positions: list[chess.Board]) -> None:
    kinds = set()
    for board in positions:
        for move in board.legal_moves:
            assert vocab.move_of(vocab.token_of(move)) == move
            kinds |= {"promotion"} if move.promotion else set()
            kinds |= {"castling"} if board.is_castling(move) else set()
            kinds |= {"en passant"} if board.is_en_passant(move) else set()
    assert kinds == {"promotion", "castling", "en passant"}
    assert vocab.token_of("e1g1") == vocab.token_of(chess.Board("4k3/8/8/8/8/8/8/4K2R w K - 0 1").parse_san("O-O"))


def test_move_features_match_python_chess(positions: list[chess.Board]) -> None:
    positions = positions[::3]  # the reference is slow; the fixture's games still reach every kind of move
    features = featurise(positions)
    assert features.move_features.shape == (features.legal_offsets[-1], len(MOVE_FEATURES))
    columns = list(MOVE_FEATURES)
    for index, board in enumerate(positions):
        got = features.move_features[features.legal_offsets[index] : features.legal_offsets[index + 1]]
        expected = np.array(reference_features(board), dtype=np.int64).reshape(-1, len(columns))
        mismatch = np.argwhere(got != expected)
        assert not len(mismatch), f"{board.fen()}: {columns[mismatch[0][1]]} of {features.moves[index][mismatch[0][0]]}"
        assert features.moves[index] == list(board.legal_moves)
        assert [
            vocab.move_of(t)
            for t in features.legal_tokens[features.legal_offsets[index] : features.legal_offsets[index + 1]]
        ] == features.moves[index]
    assert (features.move_features.max(axis=0) < np.array(list(MOVE_FEATURES.values()))).all()


def test_board_planes_are_seen_from_the_mover(positions: list[chess.Board]) -> None:
    planes, state = board_planes(positions)
    assert planes.max() < BOARD_CODES
    for board, plane, row in zip(positions, planes, state, strict=True):
        flip = 0 if board.turn == chess.WHITE else 56
        for square in chess.SQUARES:
            piece = board.piece_at(square)
            expected = 0 if piece is None else piece.piece_type + (0 if piece.color == board.turn else 6)
            assert plane[square ^ flip] == expected
        castling = [
            board.has_kingside_castling_rights(board.turn),
            board.has_queenside_castling_rights(board.turn),
            board.has_kingside_castling_rights(not board.turn),
            board.has_queenside_castling_rights(not board.turn),
        ]
        assert row[0] == sum(bit << i for i, bit in enumerate(castling))
        assert row[1] == (0 if board.ep_square is None else chess.square_file(board.ep_square) + 1)
        assert row[2] == int(board.turn == chess.BLACK)


def test_bitboards_after_a_move_are_those_python_chess_pushes_to() -> None:
    """Every kind of move (castling both ways, en passant, promotions, captures of a rook on its home square, king
    moves that lose the castling rights) leaves the bitboards, castling rights and en-passant square of ``push``."""
    rng = random.Random(11)
    kinds = set()
    for _ in range(60):
        board = chess.Board()
        row = position_bitboards(board)
        while not board.is_game_over() and board.ply() < 200:
            moves = list(board.legal_moves)
            special = [m for m in moves if board.is_en_passant(m) or m.promotion or board.is_castling(m)]
            move = rng.choice(special if special and rng.random() < 0.7 else moves)
            kinds.update(kind for kind, test in KINDS.items() if test(board, move))
            row = bitboards_after(row, move)
            board.push(move)
            assert row == position_bitboards(board), (board.fen(), move)
    assert kinds == set(KINDS)


KINDS = {
    "short castling": lambda board, move: board.is_kingside_castling(move),
    "long castling": lambda board, move: board.is_queenside_castling(move),
    "en passant": lambda board, move: board.is_en_passant(move),
    "underpromotion": lambda board, move: move.promotion not in (None, chess.QUEEN),
    "rook taken at home": lambda board, move: (
        board.piece_type_at(move.to_square) == chess.ROOK
        and bool(board.castling_rights & chess.BB_SQUARES[move.to_square])
    ),
    "double push": lambda board, move: (
        board.piece_type_at(move.from_square) == chess.PAWN and abs(move.to_square - move.from_square) == 16
    ),
}


def test_positions_without_legal_moves_have_no_rows() -> None:
    mate = chess.Board("rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3")
    features = featurise([mate, chess.Board()])
    assert features.legal_offsets.tolist() == [0, 0, 20]
    assert features.moves[0] == []


EDGE_CASES = [
    "r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1",  # castling both ways, both colours
    "r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1",
    "r3k2r/8/8/8/8/5q2/8/R3K2R w KQkq - 0 1",  # castling through an attacked square
    "r3k2r/8/8/8/8/8/8/RN2K1NR w KQkq - 0 1",  # castling blocked
    "r3k3/8/8/8/8/8/8/R3K2R w Kq - 0 1",  # a right without its rook on the board
    "8/8/8/KPp4r/8/8/8/7k w - c6 0 2",  # en passant exposing the king along the rank
    "8/8/8/2k5/3Pp3/8/8/4K3 b - d3 0 1",  # en passant out of check by the pushed pawn
    "4k3/8/8/8/8/8/4r3/R3K3 w Q - 0 1",  # in check: king moves first, castling gone
    "4k3/8/8/8/1b6/8/8/r3K3 w - - 0 1",  # double check: only king moves
    "1n2k3/P7/8/8/8/8/8/4K3 w - - 0 1",  # promotions, with a capture
    "4k3/8/8/8/8/8/p7/1N2K3 b - - 0 1",
    "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3",  # checkmate: no moves
    "7k/5Q2/6K1/8/8/8/8/8 b - - 0 1",  # stalemate: no moves
]


def test_vectorised_featurise_equals_the_python_chess_builder() -> None:
    """`featurise` generates the legal moves itself; every output must equal the builder's, which takes python-chess's
    moves, on many random positions and on the rare cases (castling rules, en passant pins, checks, promotions)."""
    positions = random_positions(40, seed=11) + [chess.Board(fen) for fen in EDGE_CASES]
    fast = featurise(positions)
    builder = FeatureBuilder()
    for board in positions:
        builder.add(board)
    reference = builder.build()
    for name in ("boards", "state", "legal_offsets", "legal_tokens", "move_features"):
        got, expected = getattr(fast, name), getattr(reference, name)
        assert got.dtype == expected.dtype and got.shape == expected.shape and (got == expected).all(), name
    assert fast.moves == reference.moves
    double_check, promotions, _, mate, stalemate = fast.moves[-5:]
    assert not mate and not stalemate and len(promotions) == 5 + 2 * 4  # the king's five, two squares x four pieces
    assert double_check and all(move.from_square == chess.E1 for move in double_check)


@pytest.mark.parametrize(
    ("fen", "san", "check", "swing"),
    [
        ("6k1/5ppp/8/8/8/8/5PPP/2R3K1 w - - 0 1", "Rc8#", 3, 0),  # back-rank mate
        ("r6k/6pp/8/8/8/8/5PPP/2R3K1 w - - 0 1", "Rc8+", 2, -5),  # no flight, but the rook on a8 takes
        ("6k1/8/8/8/8/8/5PPP/2R3K1 w - - 0 1", "Rc8+", 1, 0),  # the king steps up
        # Black in check takes the knight with the queen, which the bishop on e6 then takes: +3 - 9.
        ("1rb3r1/pp1p2kp/1b2B1qp/2p1pN2/1n4P1/2P5/PP1P1P1P/RNB2KR1 b - - 2 26", "Qxf5", 0, -6),
        ("4k3/8/8/3q4/8/8/8/3RK3 w - - 0 1", "Rxd5", 0, 9),  # a free queen
        ("4k3/P7/8/8/8/8/8/4K3 w - - 0 1", "a8=Q+", 1, 8),  # a promotion with check
    ],
)
def test_check_kind_and_material_swing(fen: str, san: str, check: int, swing: int) -> None:
    board = chess.Board(fen)
    features = featurise([board])
    row = features.move_features[features.moves[0].index(board.parse_san(san))].astype(int)
    columns = list(MOVE_FEATURES)
    assert (row[columns.index("check")], row[columns.index("material_swing")] - 9) == (check, swing)
