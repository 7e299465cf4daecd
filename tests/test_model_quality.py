"""The quality bar: on a tiny tactical-Q panel (no engine) the oracle figures are known, so the tool is checked
against them; one slow test runs the real path (Stockfish through the engine pool, a real ChessFormer)."""

from __future__ import annotations

import math

import chess
import numpy as np
import pytest

from transcend_pipeline.model_quality import (
    EmptyBucketError,
    format_table,
    measure_policy_quality,
    sample_positions,
)
from transcend_pipeline.panel import Panel, PanelConfig, TacticalQ, consensus, play_game, player

CONFIG = PanelConfig(n_players=6, q_source="tactical", max_plies=60, resign_plies=2)
POSITIONS = 300


def bucket_rows(config: PanelConfig) -> list[dict]:
    """Player r rated by rank (player 0 the best), as `panel_players` writes them; one unrated row is ignored."""
    rows = [
        {"player": name, "player_index": r, "rating": 1500.0 - 100 * r} for r, name in enumerate(Panel(config).names)
    ]
    rows[-1]["rating"] = None
    return rows


@pytest.fixture(scope="module")
def games() -> list[list[str]]:
    panel, q = Panel(CONFIG), TacticalQ()
    rng = np.random.default_rng(7)
    played = []
    for index in range(16):
        white, black = player(panel, q, index % 5), player(panel, q, (index + 2) % 5)
        played.append([move.uci() for move in play_game(white, black, q, CONFIG, rng).moves])
    return played


class Lookup:
    """A stand-in model: a fixed distribution per position, looked up by FEN."""

    def __init__(self, choose) -> None:
        self.choose = choose

    def distributions(self, boards):
        return [self.choose(board) for board in boards]


class MeanPolicy:
    """A stand-in model that has learned the bucket exactly: the mean of the members' π (the vote, as a softmax)."""

    def __init__(self, members: list[int]) -> None:
        self.panel, self.q, self.members = Panel(CONFIG), TacticalQ(), members

    def distributions(self, boards):
        result = []
        for board in boards:
            moves, pi = self.panel.policies(board, self.q.q_values(board), self.members)
            result.append(dict(zip(moves, pi.mean(axis=0), strict=True)))
        return result


def uniform(board: chess.Board) -> dict[chess.Move, float]:
    moves = list(board.legal_moves)
    return dict.fromkeys(moves, 1.0 / len(moves))


def measure(model, games, **kwargs):
    return measure_policy_quality(model, games, CONFIG, bucket_rows(CONFIG), TacticalQ(), positions=POSITIONS, **kwargs)


def test_sample_positions_are_seeded_skip_the_opening_and_keep_the_history(games):
    first = sample_positions(games, 50, seed=3, skip_plies=6)
    again = sample_positions(games, 50, seed=3, skip_plies=6)
    other = sample_positions(games, 50, seed=4, skip_plies=6)
    assert [(b.fen(), m) for b, m in first] == [(b.fen(), m) for b, m in again]
    assert [(b.fen(), m) for b, m in first] != [(b.fen(), m) for b, m in other]
    assert len(first) == 50
    for board, played in first:
        assert len(board.move_stack) >= 6  # the model reads its context from the history
        assert board.is_legal(played)
        game = next(g for g in games if g[: len(board.move_stack)] == [m.uci() for m in board.move_stack])
        assert game[len(board.move_stack)] == played.uci()


def test_sample_positions_takes_every_position_when_fewer_than_asked():
    samples = sample_positions([["e2e4", "e7e5", "g1f3"]], 100, seed=0, skip_plies=1)
    assert [played.uci() for _, played in samples] == ["e7e5", "g1f3"]


def test_consensus_agrees_with_itself_and_has_the_lowest_regret(games):
    report = measure(Lookup(uniform), games, seed=0)
    assert report.positions == POSITIONS
    assert report.consensus.agreement == pytest.approx(1.0)
    panel_rows = [row for row in report.rows() if row["kind"] != "model"]
    assert min(row["q_regret"] for row in panel_rows) == report.consensus.q_regret
    assert all(row["agreement"] < 1.0 for row in panel_rows if row["kind"] != "consensus")
    # the unrated player is left out, and each rated one appears as a clone and as a softmax, best first
    assert [row["kind"] for row in report.rows()][:3] == ["model", "model", "consensus"]
    assert len(report.players) == 2 * 5
    assert report.bar == report.players[0]
    assert report.bar.rating == 1500.0 and report.bar.kind == "clone"


def test_a_random_policy_gets_low_agreement_and_fails_the_bar(games):
    report = measure(Lookup(uniform), games, seed=0)
    assert report.model_argmax.agreement < 0.5 * report.bar.agreement
    assert report.model_sampling.q_regret > report.bar.q_regret
    legal = [len(list(board.legal_moves)) for board, _ in sample_positions(games, POSITIONS, 0, skip_plies=6)]
    assert report.model_sampling.cross_entropy == pytest.approx(np.mean(np.log(legal)))  # −log(1/n) per position
    assert not report.passes_bar


def test_a_model_that_learned_the_vote_passes_the_bar(games):
    report = measure(MeanPolicy([0, 1, 2, 3, 4]), games, seed=0)
    assert report.model_argmax.agreement == pytest.approx(1.0)
    assert report.model_argmax.q_regret == pytest.approx(report.consensus.q_regret)
    assert report.model_sampling.q_regret > report.model_argmax.q_regret  # the vote's softmax still errs
    assert report.passes_bar
    assert "PASSES" in format_table(report)


def test_regret_and_top1_are_measured_against_q_and_the_played_move(games):
    q = TacticalQ()
    best = Lookup(lambda board: {max(q.q_values(board).items(), key=lambda item: item[1])[0]: 1.0})
    assert measure(best, games, seed=1).model_argmax.q_regret == pytest.approx(0.0)
    played = {board.fen(): move for board, move in sample_positions(games, POSITIONS, 1, skip_plies=6)}
    oracle = measure(Lookup(lambda board: {played[board.fen()]: 1.0}), games, seed=1)
    assert oracle.model_argmax.top1 == pytest.approx(1.0)
    assert oracle.model_sampling.cross_entropy == pytest.approx(0.0)


def test_softmax_figures_are_exact_expectations_under_the_distribution(games):
    q = TacticalQ()

    def best_or_worst(board):
        ranked = sorted(q.q_values(board).items(), key=lambda item: item[1])
        return {ranked[-1][0]: 0.5, ranked[0][0]: 0.5}

    report = measure(Lookup(best_or_worst), games, seed=2)
    expected = np.mean(
        [
            0.5 * (max(values) - min(values))
            for values in (
                q.q_values(board).values() for board, _ in sample_positions(games, POSITIONS, 2, skip_plies=6)
            )
        ]
    )
    assert report.model_sampling.q_regret == pytest.approx(expected)
    # and with these panel temperatures, a player's softmax loses more expected score than its own argmax
    for clone_row, softmax_row in zip(report.players[::2], report.players[1::2], strict=True):
        assert (clone_row.kind, softmax_row.kind) == ("clone", "player")
        assert softmax_row.q_regret > clone_row.q_regret
        assert 0.0 < softmax_row.cross_entropy < math.inf


def test_an_empty_bucket_is_an_error(games):
    rows = [{"player": "x", "player_index": 0, "rating": None}]
    with pytest.raises(EmptyBucketError):
        measure_policy_quality(Lookup(uniform), games, CONFIG, rows, TacticalQ(), positions=10)


@pytest.mark.slow
def test_a_chessformer_against_the_smoke_panel_with_stockfish(games, stockfish_path):
    import torch

    from transcend_pipeline.inference import legal_move_distribution
    from transcend_pipeline.model import ChessFormer, config_for
    from transcend_pipeline.opponents import EnginePool, PooledQ

    config = PanelConfig.for_profile("smoke")
    torch.manual_seed(0)
    model = ChessFormer(config_for("tiny"))
    rows = [
        {"player": name, "player_index": r, "rating": 1400.0 - 50 * r} for r, name in enumerate(Panel(config).names)
    ]
    with EnginePool.start(PooledQ.engine_factory(config, stockfish_path), 2) as pool:
        q = PooledQ(pool)
        report = measure_policy_quality(model, games, config, rows, q, positions=60, seed=0)
        boards = [board for board, _ in sample_positions(games, 60, 0, skip_plies=config.opening_plies[1])]
        argmax = [max(d, key=d.get) for d in legal_move_distribution(model, boards, 0.0).as_dicts()]
        vote = [consensus(Panel(config), q, list(range(6))).distributions([b])[0] for b in boards]
    agreement = np.mean([d[move] for d, move in zip(vote, argmax, strict=True)])
    assert report.model_argmax.agreement == pytest.approx(agreement)
    assert report.consensus.agreement == pytest.approx(1.0)
    assert report.consensus.q_regret <= report.bar.q_regret
