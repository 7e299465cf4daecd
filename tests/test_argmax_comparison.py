"""The model's argmax against the best player's clone and the panel on the same positions: the figures against cases
whose answer is known (a hung queen that depth-1 Q scores like a quiet move), the quality bar's own Q-regret, the
panel's ground truth (experts, their argmaxes, the mixture's argmax and the paper's condition) on variant panels,
and the bootstrap over whole games."""

from __future__ import annotations

import dataclasses

import chess
import numpy as np
import pytest

from transcend_pipeline.model_quality import measure_policy_quality, rated_bucket
from transcend_pipeline.model_quality import sample_positions as quality_bar_positions
from transcend_pipeline.opponents import EnginePool, PooledQ
from transcend_pipeline.panel import Panel, PanelConfig, TacticalQ, clone, consensus, play_game, player
from transcend_pipeline.state_advantage import (
    BUCKET_HELD_OUT,
    CLONE,
    CONSENSUS,
    EXPERT,
    EXPERT_ARGMAX,
    HELD_OUT,
    MODEL,
    OWN_GAMES,
    PLAYER,
    ArgmaxComparison,
    ComparedPolicy,
    Expert,
    Position,
    SourceGame,
    argmax_comparison,
    argmax_comparison_section,
    compare_policies,
    game_bootstrap_interval,
    panel_policies,
    sample_positions,
    score_positions,
    shown_rows,
    transcendence_condition,
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
    experts = [Expert(row["player"], row["player_index"], 1.0) for row in rated_bucket(rows)]  # equal weights
    names = Panel(TACTICAL).names
    assert [(e.name, e.index, e.weight) for e in experts] == [(name, r, 1.0) for r, name in enumerate(names)]
    policies = panel_policies(first_moves, Panel(TACTICAL), experts, q)
    kinds = [MODEL, CLONE, PLAYER, CONSENSUS] + [EXPERT, EXPERT_ARGMAX] * 5
    assert [policy.kind for policy in policies] == kinds
    assert [policy.name for policy in policies[1:3]] == [f"clone({names[0]})", f"player({names[0]})"]
    assert [policy.name for policy in policies[4:6]] == [f"player({names[1]})", f"clone({names[1]})"]
    compared = compare_policies(
        positions, policies, q, [q.q_values(p.board) for p in positions], experiment="x", depth=1
    )
    assert [(row.source, row.kind) for row in compared] == [
        (source, kind) for source in (HELD_OUT, OWN_GAMES) for kind in kinds
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
        "model τ→0": report.model_argmax.q_regret,
        "consensus(6 players, weighted)": report.consensus.q_regret,  # equal weights: the bar's unweighted vote
        **{quality.policy: quality.q_regret for quality in report.players},  # every clone and player
    }
    assert report.bar.policy == f"clone({names[0]})"
    for row in whole:
        assert row.positions == 60 and row.games == 7
        assert row.q1_regret == pytest.approx(expected[row.policy])
        assert row.deep_regret == pytest.approx(row.q1_regret)
    clone_row = next(row for row in whole if row.kind == CLONE)
    assert (clone_row.deep_regret_diff, clone_row.deep_diff_low, clone_row.deep_diff_high) == (0.0, 0.0, 0.0)
    section = argmax_comparison_section(whole)
    assert f"| x | own games | model τ→0 | 60 (7) | {whole[0].reward:.4f} | {expected['model τ→0']:.4f} |" in section
    assert "- x, own games (60 positions, 7 games): model − clone is" in section
    assert "- x, own games: the paper's condition (the mixture's argmax beats every expert)" in section
    assert sum(f"| x | own games | {row.policy} |" in section for row in whole) == len(shown_rows(whole)) <= 6


def test_compare_policies_needs_one_model_and_one_clone() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        compare_policies([], [ComparedPolicy("m", MODEL, Fixed({}))], TacticalQ(), [], experiment="x", depth=1)
    with pytest.raises(ValueError, match="at least one expert"):
        panel_policies(Fixed({}), Panel(TACTICAL), [], TacticalQ())


def test_the_bootstrap_resamples_whole_games() -> None:
    """Two games of 50 positions each, one all +1 and one all 0: resampling positions would give a narrow interval
    around 0.5, resampling games gives means of 0, 0.5 or 1 only, and a seeded rerun the same interval."""
    values = [1.0] * 50 + [0.0] * 50
    games = ["a"] * 50 + ["b"] * 50
    low, high = game_bootstrap_interval(values, games, seed=0)
    assert (low, high) == (0.0, 1.0)
    assert game_bootstrap_interval(values, games, seed=0) == (low, high)
    by_position = game_bootstrap_interval(values, list(range(100)), seed=0)  # every position its own game
    assert 0.35 < by_position[0] < 0.5 < by_position[1] < 0.65
    # games of different lengths weigh by their positions: the mean over positions, not over games
    low, high = game_bootstrap_interval([1.0] * 3 + [0.0], ["a", "a", "a", "b"], seed=0, level=0.0)
    assert low == pytest.approx(0.75) and high == pytest.approx(0.75)
    assert np.isnan(game_bootstrap_interval([], [], seed=0)).all()


def test_rows_round_trip_as_warehouse_rows() -> None:
    row = ArgmaxComparison("cap1000", OWN_GAMES, "model τ→0", MODEL, 10, 3, 8, *([0.1] * 13))
    assert ArgmaxComparison(**row.as_row()) == row and row.best_expert_policy is None
    mixture = dataclasses.replace(row, kind=CONSENSUS, best_expert_policy="player(p1)", condition_diff=0.01)
    assert ArgmaxComparison(**mixture.as_row()) == mixture


SMOKE = dataclasses.replace(PanelConfig.for_profile("smoke"), q_source="tactical")


@pytest.fixture(scope="module")
def smoke_positions() -> list[Position]:
    """60 held-out positions (after the random openings) from six games of the smoke panel on the tactical Q."""
    panel, q = Panel(SMOKE), TacticalQ()
    rng = np.random.default_rng(11)
    games = [
        SourceGame(
            f"g{g}",
            [move.uci() for move in play_game(player(panel, q, g), player(panel, q, g + 3), q, SMOKE, rng).moves],
        )
        for g in range(6)
    ]
    return sample_positions(games, HELD_OUT, 60, seed=0, skip_plies=SMOKE.opening_plies[1])


def argmaxes(policy, boards: list[chess.Board]) -> list[chess.Move]:
    return [max(distribution, key=distribution.get) for distribution in policy.distributions(boards)]


def experts_of(config: PanelConfig, weights: tuple[float, ...]) -> list[Expert]:
    names = Panel(config).names
    return [Expert(names[r], r, weight) for r, weight in enumerate(weights)]


def test_with_one_shared_quirk_the_mixture_argmax_is_the_experts_common_argmax(smoke_positions: list[Position]) -> None:
    """ρ = 1: every expert has the same quirk table. Equal players are then one policy, so the weighted mixture's argmax
    is their common argmax everywhere; players of different skill still share their argmax in most positions, and the
    mixture picks it there. Independent quirks (ρ = 0) leave a common argmax in few positions."""
    boards = [position.board for position in smoke_positions]
    q = TacticalQ()
    weights = (0.5, 0.3, 0.2)

    def common_and_mixture(config: PanelConfig) -> tuple[np.ndarray, np.ndarray]:
        panel = Panel(config)
        clones = [argmaxes(clone(panel, q, r), boards) for r in range(3)]
        mixture = argmaxes(consensus(panel, q, [0, 1, 2], weights), boards)
        common = np.array([len(set(moves)) == 1 for moves in zip(*clones, strict=True)])
        return common, np.array([m == c for m, c in zip(mixture, clones[0], strict=True)])

    common, same = common_and_mixture(PanelConfig(rho=1.0, equal_players=3, equal_to=2))
    assert common.all() and same.all()
    common, same = common_and_mixture(dataclasses.replace(SMOKE, rho=1.0))
    assert common.mean() > 0.8 and same[common].all()
    diverse, _ = common_and_mixture(SMOKE)
    assert diverse.mean() < 0.5

    config = PanelConfig(rho=1.0, equal_players=3, equal_to=2)
    rows = compare_policies(
        smoke_positions,
        panel_policies(
            Fixed({b.fen(): next(iter(b.legal_moves)).uci() for b in boards}),
            Panel(config),
            experts_of(config, weights),
            q,
        ),
        q,
        [q.q_values(board) for board in boards],
        experiment="rho1-k3",
        depth=1,
    )
    by_kind = {row.kind: row for row in rows}
    assert by_kind[CONSENSUS].reward == pytest.approx(by_kind[CLONE].reward)  # one policy, one argmax
    assert by_kind[CONSENSUS].deep_regret_diff == pytest.approx(0.0, abs=1e-12)
    experts = [row for row in rows if row.kind in (PLAYER, EXPERT)]
    assert len(experts) == 3 and all(0.0 < row.reward < 1.0 for row in rows)
    assert [row.reward for row in experts] == pytest.approx([experts[0].reward] * 3)  # the same softmax
    assert all(row.reward <= by_kind[CONSENSUS].reward + 1e-12 for row in rows if row.kind == EXPERT_ARGMAX)


def test_a_weighted_mixture_of_one_expert_is_its_clone_and_carries_the_condition(
    smoke_positions: list[Position],
) -> None:
    boards = [position.board for position in smoke_positions]
    q = TacticalQ()
    panel = Panel(SMOKE)
    assert argmaxes(consensus(panel, q, [4, 7, 9], [1, 0, 0]), boards) == argmaxes(clone(panel, q, 4), boards)
    experts = [Expert(panel.names[r], r, weight) for r, weight in ((4, 1.0), (7, 0.0), (9, 0.0))]
    # the held-out positions twice over: as the arm's own test split and as the default bucket's
    positions = smoke_positions + [Position(BUCKET_HELD_OUT, p.game, p.board) for p in smoke_positions]
    rows = compare_policies(
        positions,
        panel_policies(Fixed({b.fen(): next(iter(b.legal_moves)).uci() for b in boards}), panel, experts, q),
        q,
        [q.q_values(position.board) for position in positions],
        experiment="arm",
        depth=1,
        seed=3,
    )
    assert [row.source for row in rows] == [HELD_OUT] * 8 + [BUCKET_HELD_OUT] * 8
    mine = rows[:8]
    by_kind = {row.kind: row for row in mine}
    assert by_kind[CONSENSUS].reward == by_kind[CLONE].reward
    assert (by_kind[CONSENSUS].deep_regret_diff, by_kind[CONSENSUS].deep_diff_low) == (0.0, 0.0)
    assert [row.policy for row in mine if row.kind in (EXPERT, EXPERT_ARGMAX)] == [
        f"player({panel.names[7]})",
        f"clone({panel.names[7]})",
        f"player({panel.names[9]})",
        f"clone({panel.names[9]})",
    ]
    # the paper's condition: the mixture's argmax against the expert policy that earns most here
    softmaxes = [row for row in mine if row.kind in (PLAYER, EXPERT)]
    best = max(softmaxes, key=lambda row: row.reward)
    mixture = by_kind[CONSENSUS]
    assert mixture.best_expert_policy == best.policy
    assert mixture.condition_diff == pytest.approx(mixture.reward - best.reward)
    assert mixture.condition_low <= mixture.condition_diff <= mixture.condition_high
    assert all(row.condition_diff is None and row.best_expert_policy is None for row in mine if row.kind != CONSENSUS)
    condition = transcendence_condition(mine)
    assert (condition.mixture, condition.best_expert, condition.diff) == (
        mixture.policy,
        best.policy,
        mixture.condition_diff,
    )
    assert condition.verdict == (
        "holds" if mixture.condition_low > 0 else "fails" if mixture.condition_high < 0 else "unclear"
    )
    assert transcendence_condition(rows[8:]).diff == pytest.approx(condition.diff)  # the same positions
    with pytest.raises(ValueError, match="one experiment and source"):
        transcendence_condition(rows)
    assert transcendence_condition([row for row in mine if row.kind != CONSENSUS]) is None


def test_argmax_comparison_on_a_variant_panel_with_stockfish(
    smoke_positions: list[Position], stockfish_path: str
) -> None:
    """The whole measurement on an arm's panel (k equal players): Stockfish's Q and R, the experts' rows, a
    readable section."""
    config = dataclasses.replace(PanelConfig.for_profile("smoke"), equal_players=4, equal_to=3)
    experts = experts_of(config, (0.4, 0.3, 0.2, 0.1))
    positions = smoke_positions[::6]
    first = Fixed({p.board.fen(): next(iter(p.board.legal_moves)).uci() for p in positions})
    rows = argmax_comparison(
        first, positions, config, experts, stockfish_path, experiment="k4", depth=2, workers=2, seed=0
    )
    assert [row.kind for row in rows] == [MODEL, CLONE, PLAYER, CONSENSUS] + [EXPERT, EXPERT_ARGMAX] * 3
    best = Panel(PanelConfig.for_profile("smoke")).names[3]  # the equal panel's first member is player 3
    assert rows[1].policy == f"clone({best})" and rows[2].policy == f"player({best})"
    assert all(0.0 <= row.reward <= 1.0 and row.positions == len(positions) for row in rows)
    # reward + deep regret is the mean best reward, the same for every policy on the same positions
    assert [row.reward + row.deep_regret for row in rows] == pytest.approx([rows[0].reward + rows[0].deep_regret] * 10)
    section = argmax_comparison_section(rows)
    assert "the paper's condition" in section and "weighted" in section
    assert sum(row.policy in section for row in rows if row.kind in (EXPERT, EXPERT_ARGMAX)) <= 2
