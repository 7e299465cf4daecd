"""Opponents with real Stockfish: the engine pool, skill levels, the panel's Q over the pool, and rating sanity."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import chess
import chess.pgn
import numpy as np
import pytest

from transcend_pipeline import opponents
from transcend_pipeline.engine import Engine, EngineError
from transcend_pipeline.opponents import (
    STOCKFISH_ANCHORS,
    EnginePool,
    PooledQ,
    RandomPolicy,
    SkillEngine,
    StockfishPolicy,
    _position_command,
    stockfish_opponents,
)
from transcend_pipeline.panel.players import PanelConfig
from transcend_pipeline.play import Pairing, Player, Rules, play_matches

CONFIG = dataclasses.replace(PanelConfig.for_profile("smoke"), n_players=6)  # the tests rate six players by hand


@pytest.fixture(scope="module")
def skill_pool(stockfish_path: str) -> Iterator[EnginePool]:
    with EnginePool.start(lambda: SkillEngine(stockfish_path), size=2) as pool:
        yield pool


@pytest.fixture(scope="module")
def q(stockfish_path: str) -> Iterator[PooledQ]:
    with EnginePool.start(PooledQ.engine_factory(CONFIG, stockfish_path), size=2) as pool:
        yield PooledQ(pool)


def test_pool_spreads_work_over_every_engine_and_keeps_order(skill_pool):
    def search(engine: SkillEngine, item: int) -> tuple[int, int]:
        engine.best_move(chess.Board(), 1, "go depth 1")  # a real round trip, during which the other engine works
        return engine.pid, item

    pids = skill_pool.map(search, list(range(40)))
    assert [item for _, item in pids] == list(range(40))
    assert {pid for pid, _ in pids} == {engine.pid for engine in skill_pool.engines}
    assert len(skill_pool.engines) == 2


def test_pool_map_answers_every_item_when_calls_share_the_engines(skill_pool):
    """Calls from several threads at once (the match engine's opponents) each get all their answers, in order."""
    boards = [chess.Board(), chess.Board("4k3/8/8/8/8/8/8/4K2R w K - 0 1"), chess.Board("8/8/8/8/8/2k5/8/K7 b - - 0 1")]
    with ThreadPoolExecutor(4) as threads:
        calls = [
            threads.submit(skill_pool.map, lambda engine, board: engine.best_move(board, 20, "go depth 4"), boards * n)
            for n in (1, 5, 9, 2)
        ]
        answers = [call.result() for call in calls]
    for n, moves in zip((1, 5, 9, 2), answers, strict=True):
        assert len(moves) == 3 * n
        assert all(move in board.legal_moves for move, board in zip(moves, boards * n, strict=True))
    assert skill_pool.map(lambda engine, item: item, []) == []


def replayed(command: str) -> chess.Board:
    """The board a UCI `position` command describes, built as Stockfish builds it."""
    start, _, moves = command.removeprefix("position ").partition(" moves ")
    board = chess.Board() if start == "startpos" else chess.Board(start.removeprefix("fen "))
    for uci in moves.split():
        board.push_uci(uci)
    return board


def test_position_commands_carry_the_position_and_every_ply_that_can_recur():
    """The command starts again from a position asked about right after a capture or pawn move once its list grows
    long, so Stockfish replays few moves yet knows every earlier position that can still recur: replaying it
    gives the same position, en-passant square and repetition counts; take-backs and other roots are followed."""
    rng = np.random.default_rng(3)
    roots = [chess.STARTING_FEN, "r3k2r/pppq1ppp/2n5/3pp3/8/8/PPPP1PPP/R3K2R w KQkq - 4 9"]
    shortened = repeated = 0
    for game in range(12):
        board = chess.Board(roots[game % 2])
        while not board.is_game_over() and board.ply() < 140:
            moves = list(board.legal_moves)
            back = [m for m in moves if board.move_stack[-2:-1] and m.to_square == board.move_stack[-2].from_square]
            choices = back if back and rng.random() < 0.6 else moves  # shuffling back and forth repeats positions
            board.push(choices[int(rng.integers(len(choices)))])
            if rng.random() < 0.1 and len(board.move_stack) > 2:  # a take-back and another line
                board.pop()
                continue
            command = _position_command(board)
            copy = replayed(command)
            assert copy.fen() == board.fen() and copy.ep_square == board.ep_square
            assert [copy.is_repetition(n) for n in (2, 3)] == [board.is_repetition(n) for n in (2, 3)]
            assert copy.halfmove_clock == board.halfmove_clock
            shortened += len(copy.move_stack) < len(board.move_stack)
            repeated += board.is_repetition(2)
    assert shortened > 100 and repeated > 20


def test_engines_are_quit_when_the_pool_closes(stockfish_path):
    with EnginePool.start(lambda: SkillEngine(stockfish_path), size=2) as pool:
        processes = [engine._process for engine in pool.engines]
    assert all(process.poll() is not None for process in processes)


def test_stockfish_levels_play_legal_moves_and_take_mate_in_one(skill_pool):
    mate_in_one = chess.Board()
    for san in ("f3", "e5", "g4"):
        mate_in_one.push_san(san)
    boards = [chess.Board(), mate_in_one]
    moves = StockfishPolicy(skill_pool, 20, depth=3).distributions(boards)
    assert next(iter(moves[0])) in chess.Board().legal_moves
    assert list(moves[1]) == [chess.Move.from_uci("d8h4")]
    assert StockfishPolicy(skill_pool, 1, nodes=200).go == "go nodes 200"
    with pytest.raises(ValueError):
        StockfishPolicy(skill_pool, 1)


def _mates_in_one(copies: int) -> tuple[list[chess.Board], list[chess.Move]]:
    """Three mates in one (Fool's mate, a back-rank mate, a smothered mate) `copies` times over, with their moves."""
    fools_mate = chess.Board()
    for san in ("f3", "e5", "g4"):
        fools_mate.push_san(san)
    back_rank = chess.Board("6k1/5ppp/8/8/8/8/5PPP/3R2K1 w - - 0 1")
    smothered = chess.Board("6rk/6pp/7N/8/8/8/6PP/6K1 w - - 0 1")
    mates = [chess.Move.from_uci(uci) for uci in ("d8h4", "d1d8", "h6f7")]
    return [fools_mate, back_rank, smothered] * copies, mates * copies


def test_queued_searches_answer_each_position_in_order(skill_pool):
    """Searches asked ahead of their answers (and the policy's interleaved shares) come back in the order asked:
    three mates in one, each answered by its own mating move, twelve times over."""
    boards, mates = _mates_in_one(12)
    fools_mate, back_rank, smothered = boards[:3]
    engine = skill_pool.engines[0]
    assert engine.best_moves(boards, 20, "go depth 3") == mates
    assert [engine.best_move(board, 20, "go depth 3") for board in boards[:3]] == mates[:3]
    mated = fools_mate.copy()
    mated.push(mates[0])
    with pytest.raises(EngineError, match="no move"):
        engine.best_moves([back_rank, mated, smothered], 20, "go depth 3")
    assert engine.best_moves(boards, 20, "go depth 3") == mates  # no answer was left queued
    for policy in (StockfishPolicy(skill_pool, 20, depth=3), StockfishPolicy(skill_pool, 20, nodes=2000)):
        assert [next(iter(answer)) for answer in policy.distributions(boards)] == mates


def test_searches_asked_ahead_are_answered_to_each_caller_in_any_order(skill_pool, monkeypatch):
    """The match engine's two halves each ask an engine for a batch of searches before reading the other's: searches
    asked ahead, some at another level (which waits for the searches before it) and more than the engine may hold
    unanswered (the writer then reads answers, anyone's, to make room), each come back with their own moves,
    whichever caller reads them."""
    boards, mates = _mates_in_one(10)
    engine = skill_pool.engines[0]
    monkeypatch.setattr(opponents, "QUEUED_BYTES", 200)  # a few questions at a time
    first = engine.ask(boards, 20, "go depth 3")
    second = engine.ask(boards[:3], 20, "go depth 2")
    by_nodes = engine.ask(boards[:9], 20, "go nodes 2000")
    other_level = engine.ask(boards[:6], 19, "go depth 3")
    with ThreadPoolExecutor(1) as thread:
        assert thread.submit(engine.answers, other_level).result() == mates[:6]
    assert engine.answers(by_nodes) == mates[:9]
    assert engine.answers(second) == mates[:3]
    assert engine.answers(first) == mates
    assert engine.best_moves([], 18, "go depth 1") == []
    assert not engine._searches and engine._written == engine._answered
    # the policy asks every engine at once and reads them when collected (the match engine's `AsksAhead`)
    first, second, third = (
        StockfishPolicy(skill_pool, 20, **limit).ask(boards) for limit in ({"depth": 3}, {"depth": 2}, {"nodes": 2000})
    )
    assert [[next(iter(answer)) for answer in collect()] for collect in (third, second, first)] == [mates] * 3


def _real_positions(samples: Path, count: int, skip: int = 0) -> list[chess.Board]:
    """One position from each of `count` real games (of 30 plies or more, after the first `skip` games), at plies
    spread over the games, each board with its game's moves (the `position` command lists them)."""
    boards: list[chess.Board] = []
    with (samples / "lichess_2021-10_dump_excerpt_999games.pgn").open() as pgn:
        for _ in range(skip):
            chess.pgn.skip_game(pgn)
        while len(boards) < count and (game := chess.pgn.read_game(pgn)) is not None:
            moves = list(game.mainline_moves())
            if len(moves) >= 30:
                board = chess.Board()
                for move in moves[: 8 + 7 * len(boards) % (len(moves) - 10)]:
                    board.push(move)
                boards.append(board)
    return boards


@pytest.mark.parametrize("limit", [{"nodes": 200}, {"depth": 4}], ids=["nodes", "depth"])
def test_full_strength_moves_do_not_depend_on_what_the_engines_searched_before(skill_pool, lichess_samples, limit):
    """At `Skill Level` 20 a position's move depends on the position and the limit only: the same asked in one batch
    on one engine, in another order, among other positions on the other engine, or spread over both. (Without the
    `ucinewgame` before each search, 7 to 17 of these 40 moves changed.)"""
    boards = _real_positions(lichess_samples, 40)
    others = _real_positions(lichess_samples, 40, skip=200)
    policy = StockfishPolicy(skill_pool, 20, **limit)
    first, second = skill_pool.engines
    batch = first.best_moves(boards, 20, policy.go)
    order = np.random.default_rng(0).permutation(len(boards))
    shuffled = dict(zip(order, first.best_moves([boards[i] for i in order], 20, policy.go), strict=True))
    assert [shuffled[i] for i in range(len(boards))] == batch
    mixed = [board for pair in zip(others, boards, strict=True) for board in pair]
    assert second.best_moves(mixed, 20, policy.go)[1::2] == batch
    assert [next(iter(answer)) for answer in policy.distributions(boards)] == batch


def test_stockfish_opponents_carry_the_papers_anchors_by_default(skill_pool):
    opponents = stockfish_opponents(skill_pool)
    assert [(o.name, o.rating) for o in opponents] == [
        ("stockfish-L1", 1554.0),
        ("stockfish-L3", 1867.0),
        ("stockfish-L5", 2148.0),
    ]
    assert [o.policy.go for o in opponents] == ["go depth 2", "go depth 4", "go depth 6"]
    custom = stockfish_opponents(skill_pool, anchors={0: 1350.0}, nodes=500)
    assert [(o.rating, o.policy.level, o.policy.go) for o in custom] == [(1350.0, 0, "go nodes 500")]
    assert STOCKFISH_ANCHORS == {1: 1554.0, 3: 1867.0, 5: 2148.0}


def test_random_play_loses_every_game_to_stockfish(skill_pool):
    weakest = stockfish_opponents(skill_pool, anchors={1: 1554.0})[0]
    records = play_matches(
        [Pairing(Player("random", RandomPolicy(), "random"), weakest, games=4)], rules=Rules(max_plies=200), rng_seed=0
    )
    assert [record.score for record in records] == [0.0] * 4
    assert {record.termination for record in records} == {"checkmate"}


def test_pooled_q_scores_as_a_single_engine_does(q, stockfish_path):
    board = chess.Board()
    board.push_san("e4")
    with Engine(stockfish_path, depth=CONFIG.depth, multipv=CONFIG.multipv, floor_cp=CONFIG.floor_cp) as engine:
        expected = engine.score_moves(board)
    assert q.q_values(board) == pytest.approx(expected)
    assert q.evaluate([board]) == [pytest.approx(max(expected.values()))]


def test_independent_q_does_not_depend_on_what_the_engines_searched_before(q, stockfish_path):
    """Nor on the pool's size, nor on which of two positions differing only in their clocks was asked first:
    Stockfish scales its evaluation down as the halfmove clock grows, so the memo keeps the clock in its key."""
    rng = np.random.default_rng(3)
    board, boards = chess.Board(), []
    while len(boards) < 30 and not board.is_game_over():
        board.push(sorted(board.legal_moves, key=chess.Move.uci)[rng.integers(board.legal_moves.count())])
        boards.append(board.copy())
    later = [board.copy(stack=False) for board in boards[::3]]  # the same positions, forty moves and no pawn later
    for board in later:
        board.halfmove_clock, board.fullmove_number = 80, board.fullmove_number + 40
    asked = boards + later
    forward, backward = PooledQ(q.pool, independent=True), PooledQ(q.pool, independent=True)
    forward.prefetch(asked)
    backward.prefetch(asked[::-1])
    with EnginePool.start(PooledQ.engine_factory(CONFIG, stockfish_path), size=1) as pool:
        alone = PooledQ(pool, independent=True)
        expected = [alone.q_values(board) for board in asked]  # one position at a time
    assert [forward.q_values(board) for board in asked] == expected
    assert [backward.q_values(board) for board in asked] == expected
    assert any(expected[len(boards) + i] != expected[3 * i] for i in range(len(later)))  # the clock does count
