"""The model's argmax against the best player's clone on the same positions: the figures against cases whose answer
is known (a hung queen that depth-1 Q scores like a quiet move), the quality bar's own Q-regret, and the bootstrap
over whole games."""

from __future__ import annotations

import chess
import numpy as np
import pytest

from transcend_pipeline.model_quality import measure_policy_quality
from transcend_pipeline.model_quality import sample_positions as quality_bar_positions
from transcend_pipeline.opponents import EnginePool, PooledQ
from transcend_pipeline.panel import Panel, PanelConfig, TacticalQ, play_game, player
from transcend_pipeline.state_advantage import (
    CLONE,
    CONSENSUS,
    HELD_OUT,
    MODEL,
    OWN_GAMES,
    PLAYER,
    ArgmaxComparison,
    ComparedPolicy,
    Position,
    argmax_comparison_section,
    bootstrap_mean_interval,
    compare_policies,
    game_bootstrap_interval,
    panel_policies,
    score_positions,
)

#: White to move in each; `hang` puts the queen where a minor piece takes it, `quiet` is a harmless pawn move.
#: Depth-1 Stockfish lists neither among its top 6 lines, so the panel's Q gives both the same floor.
CASES = {
    "qgd": ("d2d4 d7d5 c2c4 e7e6 b1c3 g8f6 c1g5 f8e7 e2e3 e8g8", "d1g4", "a2a3"),  # Qg4?? Nxg4
    "najdorf": ("e2e4 c7c5 g1f3 d7d6 d2d4 c5d4 f3d4 g8f6 b1c3 a7a6", "d1g4", "a2a3"),  # Qg4?? Bxg4
}
TACTICAL = PanelConfig(n_players=6, q_source="tactical", max_plies=60, resign_plies=2)


def board_after(moves: str) -> chess.Board:
    board = chess.Board()
    for uci in moves.split():
        board.push_uci(uci)
    return board


class Fixed:
    """A stand-in argmax policy: one chosen move per position, looked up by FEN."""

    def __init__(self, moves: dict[str, str]) -> None:
        self.moves = moves

    def distributions(self, boards: list[chess.Board]) -> list[dict[chess.Move, float]]:
        return [{chess.Move.from_uci(self.moves[board.fen()]): 1.0} for board in boards]


def test_deep_regret_sees_a_hung_queen_that_the_depth1_floor_scores_like_a_quiet_move(stockfish_path: str) -> None:
    positions = [Position(OWN_GAMES, name, board_after(moves)) for name, (moves, _, _) in CASES.items()]
    fens = {name: position.board.fen() for name, position in zip(CASES, positions, strict=True)}
    hangs = Fixed({fens[name]: hang for name, (_, hang, _) in CASES.items()})
    quiet = Fixed({fens[name]: calm for name, (_, _, calm) in CASES.items()})
    rewards = score_positions([position.board for position in positions], stockfish_path, depth=8, workers=2)
    config = PanelConfig()
    with EnginePool.start(PooledQ.engine_factory(config, stockfish_path), size=2) as pool:
        q = PooledQ(pool, independent=True)
        model, bar = compare_policies(
            positions,
            [ComparedPolicy("hangs its queen", MODEL, hangs), ComparedPolicy("pushes a pawn", CLONE, quiet)],
            q,
            rewards,
            experiment="cap1000",
            depth=8,
        )
    assert model.q_floor_rate == bar.q_floor_rate == 1.0  # both moves sit at Q's floor...
    assert model.q1_regret == pytest.approx(bar.q1_regret)  # ...so depth-1 Q-regret cannot tell them apart
    assert model.q1_regret_diff == pytest.approx(0.0, abs=1e-12)
    assert model.deep_regret > 0.3 > 0.1 > bar.deep_regret  # the deeper search sees the queen go
    assert (model.blunder_rate_02, model.blunder_rate_01, bar.blunder_rate_02) == (1.0, 1.0, 0.0)
    assert model.deep_regret_diff == pytest.approx(model.deep_regret - bar.deep_regret)
    assert model.agreement_with_model == 1.0 and bar.agreement_with_model == 0.0
    assert (model.positions, model.games, model.source) == (2, 2, OWN_GAMES)


def tactical_games(count: int) -> list[list[str]]:
    panel, q = Panel(TACTICAL), TacticalQ()
    rng = np.random.default_rng(7)
    games = []
    for index in range(count):
        white, black = player(panel, q, index % 5), player(panel, q, (index + 2) % 5)
        games.append([move.uci() for move in play_game(white, black, q, TACTICAL, rng).moves])
    return games


def test_q_regret_is_the_quality_bars_and_rows_come_per_source() -> None:
    """On the quality bar's own positions and Q the comparison reports the bar's Q-regret for every policy; with
    R = Q the deep regret is the same number, and each source gets its own rows."""
    games = tactical_games(8)
    rows = [
        {"player": name, "player_index": r, "rating": 1500.0 - 100 * r} for r, name in enumerate(Panel(TACTICAL).names)
    ]
    rows.reverse()  # the best player is found by rating, not by order
    samples = quality_bar_positions(games, 60, 0, skip_plies=TACTICAL.opening_plies[1])
    first_moves = Fixed({board.fen(): next(iter(board.legal_moves)).uci() for board, _ in samples})
    report = measure_policy_quality(first_moves, games, TACTICAL, rows, TacticalQ(), positions=60, seed=0)
    positions = [Position(OWN_GAMES if i % 2 else HELD_OUT, f"g{i % 7}", board) for i, (board, _) in enumerate(samples)]
    q = TacticalQ()
    policies = panel_policies(first_moves, TACTICAL, rows, q)
    assert [policy.kind for policy in policies] == [MODEL, CLONE, PLAYER, CONSENSUS]
    assert policies[1].name == f"clone({Panel(TACTICAL).names[0]})"
    compared = compare_policies(
        positions, policies, q, [q.q_values(p.board) for p in positions], experiment="x", depth=1
    )
    assert [(row.source, row.kind) for row in compared] == [
        (source, kind) for source in (HELD_OUT, OWN_GAMES) for kind in (MODEL, CLONE, PLAYER, CONSENSUS)
    ]
    whole = compare_policies(
        [Position(OWN_GAMES, p.game, p.board) for p in positions],
        policies,
        q,
        [q.q_values(p.board) for p in positions],
        experiment="x",
        depth=1,
    )
    expected = {
        MODEL: report.model_argmax.q_regret,
        CLONE: report.bar.q_regret,
        PLAYER: report.players[1].q_regret,
        CONSENSUS: report.consensus.q_regret,
    }
    for row in whole:
        assert row.positions == 60 and row.games == 7
        assert row.q1_regret == pytest.approx(expected[row.kind])
        assert row.deep_regret == pytest.approx(row.q1_regret)
    clone_row = next(row for row in whole if row.kind == CLONE)
    assert (clone_row.deep_regret_diff, clone_row.deep_diff_low, clone_row.deep_diff_high) == (0.0, 0.0, 0.0)
    section = argmax_comparison_section(whole)
    assert f"| x | own games | model τ→0 | 60 (7) | {expected[MODEL]:.4f} |" in section
    assert "- x, own games (60 positions, 7 games): model − clone is" in section


def test_compare_policies_needs_one_model_and_one_clone() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        compare_policies([], [ComparedPolicy("m", MODEL, Fixed({}))], TacticalQ(), [], experiment="x", depth=1)


def test_the_bootstrap_resamples_whole_games() -> None:
    """Two games of 50 positions each, one all +1 and one all 0: resampling positions would give a narrow interval
    around 0.5, resampling games gives means of 0, 0.5 or 1 only, and a seeded rerun the same interval."""
    values = [1.0] * 50 + [0.0] * 50
    games = ["a"] * 50 + ["b"] * 50
    low, high = game_bootstrap_interval(values, games, seed=0)
    assert (low, high) == (0.0, 1.0)
    assert game_bootstrap_interval(values, games, seed=0) == (low, high)
    by_position = bootstrap_mean_interval(values, seed=0)
    assert 0.35 < by_position[0] < 0.5 < by_position[1] < 0.65
    # games of different lengths weigh by their positions: the mean over positions, not over games
    low, high = game_bootstrap_interval([1.0] * 3 + [0.0], ["a", "a", "a", "b"], seed=0, level=0.0)
    assert low == pytest.approx(0.75) and high == pytest.approx(0.75)
    assert np.isnan(game_bootstrap_interval([], [], seed=0)).all()


def test_rows_round_trip_as_warehouse_rows() -> None:
    row = ArgmaxComparison("cap1000", OWN_GAMES, "model τ→0", MODEL, 10, 3, 8, *([0.1] * 12))
    assert ArgmaxComparison(**row.as_row()) == row
