"""Opponents with real Stockfish: the engine pool, skill levels, the panel's Q over the pool, and rating sanity."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import chess
import pytest

from transcend_pipeline.evaluation import ratings_table
from transcend_pipeline.opponents import (
    STOCKFISH_ANCHORS,
    EnginePool,
    PooledQ,
    RandomPolicy,
    SkillEngine,
    StockfishPolicy,
    opponents_around,
    panel_baselines,
    panel_opponents,
    stockfish_opponents,
)
from transcend_pipeline.panel.dump import panel_players
from transcend_pipeline.panel.engine import Engine
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


@pytest.fixture()
def panel_rows() -> list[dict]:
    """`panel_players` rows with hand-set ratings: the smoke panel's players are ranked best (index 0) first."""
    rows = panel_players(CONFIG, "2024-01")
    for row in rows:
        row["rating"] = 1700.0 - 100.0 * row["player_index"]
    return rows


def test_pool_spreads_work_over_every_engine_and_keeps_order(skill_pool):
    pids = skill_pool.map(lambda engine, item: (engine.pid, item), list(range(40)))
    assert [item for _, item in pids] == list(range(40))
    assert {pid for pid, _ in pids} == {engine.pid for engine in skill_pool.engines}
    assert len(skill_pool.engines) == 2


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


def test_panel_opponents_and_baselines_come_from_the_panel_players_rows(panel_rows, q):
    panel_rows[5]["rating"] = None  # absent this month
    opponents = panel_opponents(CONFIG, panel_rows, q)
    assert [o.name for o in opponents] == [row["player"] for row in panel_rows[:5]]
    assert all(o.kind == "panel" and o.rating == row["rating"] for o, row in zip(opponents, panel_rows, strict=False))
    best, clone, consensus = panel_baselines(CONFIG, panel_rows, q, cap=1450.0)
    assert (best.name, best.kind, best.rating) == (panel_rows[3]["player"], "best_player", 1400.0)
    assert clone.kind == "clone" and clone.rating is None and clone.policy.policy.members == (3,)
    assert consensus.kind == "consensus" and consensus.policy.policy.members == (3, 4)
    with pytest.raises(ValueError):
        panel_baselines(CONFIG, panel_rows, q, cap=1000.0)


def test_opponents_around_the_cap_are_the_nearest_rated(panel_rows, q):
    opponents = panel_opponents(CONFIG, panel_rows, q)
    chosen = opponents_around([*opponents, Player("unrated", RandomPolicy())], cap=1420.0, count=3)
    assert [o.rating for o in chosen] == [1300.0, 1400.0, 1500.0]


@pytest.mark.slow
def test_consensus_rates_above_a_weak_player_and_random_play_far_below(panel_rows, q):
    """The oracle property through the whole path: policies, engine, pooled ratings (16 games per side)."""
    opponents = panel_opponents(CONFIG, panel_rows, q)
    consensus = panel_baselines(CONFIG, panel_rows, q, cap=1700.0)[2]
    middle = Player("middle", opponents[2].policy, "middle")
    weakest = Player("weakest", opponents[-1].policy, "weakest")
    randomly = Player("random", RandomPolicy(), "random")
    rules = Rules(max_plies=160, resign_cp=800, resign_plies=4, adjudicate_cp=300)  # no long unfinished games
    records = play_matches(
        [
            Pairing(side, opponent, games=4)
            for side in (consensus, middle, weakest, randomly)
            for opponent in opponents[2:]
        ],
        rules=rules,
        rng_seed=0,
        evaluator=q,
    )
    rating = {row["kind"]: row for row in ratings_table(records)}
    assert rating["consensus"]["rating"] > rating["weakest"]["rating"] + 200
    assert rating["random"]["score"] < 0.2
    assert rating["random"]["rating"] < rating["middle"]["rating"] - 300
