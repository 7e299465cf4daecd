"""Panel players, clones and consensus on hand-made Q tables (no engine), and the game rules and pairing."""

from __future__ import annotations

import chess
import numpy as np
import pytest

from transcend_pipeline.panel.games import activity_weights, pair_by_rating, play_game
from transcend_pipeline.panel.players import Panel, PanelConfig, clone, consensus, player
from transcend_pipeline.panel.tactical import TacticalQ


class FixedQ:
    """A QSource from a table: listed moves get their value, every other legal move `default`."""

    def __init__(self, values: dict[str, float], default: float = 0.40) -> None:
        self.values, self.default = values, default

    def q_values(self, board: chess.Board) -> dict[chess.Move, float]:
        return {move: self.values.get(move.uci(), self.default) for move in board.legal_moves}


def quirky_panel() -> Panel:
    """Three players at T=0.02, each over-valuing a different opening move by 0.13 (σ=1)."""
    panel = Panel(PanelConfig(n_players=3))
    panel.temperatures[:] = 0.02
    panel.sigmas[:] = 1.0
    panel.biases[:] = 0.0
    panel.biases[0, chess.KNIGHT, chess.F3] = 0.13
    panel.biases[1, chess.PAWN, chess.D4] = 0.13
    panel.biases[2, chess.PAWN, chess.C4] = 0.13
    return panel


def argmax(distribution: dict[chess.Move, float]) -> str:
    return max(distribution, key=distribution.__getitem__).uci()


def test_clones_follow_their_quirks_and_consensus_cancels_them() -> None:
    panel, q, board = quirky_panel(), FixedQ({"e2e4": 0.52}), chess.Board()
    clones = [argmax(clone(panel, q, r).distributions([board])[0]) for r in range(3)]
    assert clones == ["g1f3", "d2d4", "c2c4"]
    vote = consensus(panel, q, range(3)).distributions([board])[0]
    assert argmax(vote) == "e2e4"
    assert sorted(vote.values())[-2:] == [0.0, 1.0]  # an argmax policy: all mass on one move


def test_consensus_is_the_argmax_of_the_mean_policy_and_clone_of_one() -> None:
    panel = Panel(PanelConfig(n_players=5, seed=7))
    q = FixedQ({"e2e4": 0.55, "d2d4": 0.54, "g1f3": 0.53, "c2c4": 0.53}, default=0.45)
    board = chess.Board()
    mean = np.mean([list(player(panel, q, r).distributions([board])[0].values()) for r in range(5)], axis=0)
    moves = list(board.legal_moves)
    assert argmax(consensus(panel, q, range(5)).distributions([board])[0]) == moves[int(np.argmax(mean))].uci()
    for r in range(5):
        assert consensus(panel, q, [r]).distributions([board]) == clone(panel, q, r).distributions([board])


def test_player_policy_is_the_biased_softmax() -> None:
    panel = Panel(PanelConfig(n_players=4, seed=3))
    q = FixedQ({"e2e4": 0.55}, default=0.5)
    board = chess.Board()
    distribution = player(panel, q, 2).distributions([board])[0]
    moves = list(distribution)
    logits = np.array(
        [
            q.q_values(board)[m] + panel.sigmas[2] * panel.biases[2, board.piece_type_at(m.from_square), m.to_square]
            for m in moves
        ]
    )
    expected = np.exp((logits - logits.max()) / panel.temperatures[2])
    np.testing.assert_allclose(list(distribution.values()), expected / expected.sum(), rtol=1e-9)


def test_bias_destinations_are_relative_to_the_mover() -> None:
    panel = quirky_panel()
    panel.biases[:] = 0.0
    panel.biases[0, chess.PAWN, chess.E4] = 0.13  # "push a pawn to my fourth rank, e-file"
    board = chess.Board()
    board.push_uci("e2e4")
    assert argmax(clone(panel, FixedQ({}), 0).distributions([board])[0]) == "e7e5"


def test_bias_tables_are_seeded_per_player_and_shared_with_rho() -> None:
    independent = Panel(PanelConfig(n_players=3, seed=1))
    np.testing.assert_array_equal(independent.biases, Panel(PanelConfig(n_players=3, seed=1)).biases)
    assert not np.allclose(independent.biases, Panel(PanelConfig(n_players=3, seed=2)).biases)
    correlation = np.corrcoef(independent.biases[0, 1:].ravel(), independent.biases[1, 1:].ravel())[0, 1]
    assert abs(correlation) < 0.15
    shared = Panel(PanelConfig(n_players=3, seed=1, rho=0.5))
    correlation = np.corrcoef(shared.biases[0, 1:].ravel(), shared.biases[1, 1:].ravel())[0, 1]
    assert 0.35 < correlation < 0.65
    identical = Panel(PanelConfig(n_players=3, seed=1, rho=1.0))
    np.testing.assert_allclose(identical.biases[0], identical.biases[2])


def test_skill_falls_with_rank() -> None:
    panel = Panel(PanelConfig(n_players=6))
    assert np.all(np.diff(panel.temperatures) > 0) and np.all(np.diff(panel.sigmas) > 0)
    assert len(set(panel.names)) == 6


def test_choose_samples_the_distribution() -> None:
    panel = Panel(PanelConfig(n_players=2))
    panel.temperatures[:] = 0.02
    q = FixedQ({"e2e4": 0.5, "d2d4": 0.5 - 0.02 * np.log(3)}, default=0.0)  # π(e4) : π(d4) = 3 : 1
    policy, board, rng = player(panel, q, 0), chess.Board(), np.random.default_rng(0)
    panel.sigmas[:] = 0.0
    chosen = [policy.choose([board], rng)[0].uci() for _ in range(2000)]
    assert set(chosen) == {"e2e4", "d2d4"}
    assert 0.70 < chosen.count("e2e4") / len(chosen) < 0.80


def test_a_losing_side_resigns_after_the_configured_plies() -> None:
    class WhiteIsLost(FixedQ):
        def q_values(self, board: chess.Board) -> dict[chess.Move, float]:
            value = 0.01 if board.turn == chess.WHITE else 0.99
            return dict.fromkeys(board.legal_moves, value)

    config = PanelConfig(n_players=2, resign_plies=3, opening_plies=(0, 0))
    q = WhiteIsLost({})
    panel = Panel(config)
    game = play_game(player(panel, q, 0), player(panel, q, 1), q, config, np.random.default_rng(0))
    assert (game.result, game.termination, len(game.moves)) == ("0-1", "Normal", 4)


@pytest.mark.parametrize("seed", range(3))
def test_games_end_by_the_rules(seed: int) -> None:
    config = PanelConfig(n_players=2, max_plies=120)
    q = FixedQ({}, default=0.5)  # every move equal: random play
    panel = Panel(config)
    game = play_game(player(panel, q, 0), player(panel, q, 1), q, config, np.random.default_rng(seed))
    board = chess.Board()
    for move in game.moves:
        assert move in board.legal_moves
        board.push(move)
    if board.is_checkmate():
        assert game.result == ("0-1" if board.turn == chess.WHITE else "1-0")
    else:
        assert game.result == "1/2-1/2"
        assert (
            board.is_stalemate()
            or board.is_insufficient_material()
            or board.halfmove_clock >= 100
            or board.is_repetition(3)
            or board.ply() == config.max_plies
        )


def test_pairing_fills_every_cap_bucket_with_many_players() -> None:
    """On the demo pool's rating scale, each cap (max Elo ≤ cap) gets ≥ 8 players and ≥ 2,000 games."""
    config = PanelConfig.for_profile("demo")
    # A demo month's written ratings are close to evenly spaced, best first: ~2240 down to ~710 (see the README).
    ratings = np.linspace(2240.0, 710.0, config.n_players)
    pairs = pair_by_rating(
        ratings,
        config.games_per_month,
        np.random.default_rng(0),
        window=config.pairing_window,
        activity=activity_weights(config),
    )
    assert np.all(pairs[:, 0] != pairs[:, 1])
    for cap in (1000, 1300, 1500):
        in_bucket = ratings[pairs].max(axis=1) <= cap
        assert in_bucket.sum() >= 2_400, cap  # with the calibration round's: ≥ 2,000 training games
        assert len(np.unique(pairs[in_bucket])) >= 8, cap
    gaps = np.abs(np.diff(ratings[pairs], axis=1))
    assert np.median(gaps) < 2 * config.pairing_window


def test_tactical_q_values_material_exchanges_and_mate() -> None:
    q = TacticalQ().q_values(chess.Board("r1bqkb1r/pppp1ppp/2n2n2/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4"))
    assert set(q) == set(chess.Board("r1bqkb1r/pppp1ppp/2n2n2/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4").legal_moves)
    assert q[chess.Move.from_uci("h5f7")] > 0.999  # mate
    assert q[chess.Move.from_uci("h5e5")] < 0.1  # wins a pawn, loses the queen to Nxe5
    board = chess.Board("r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3")
    q = TacticalQ().q_values(board)
    best = max(q, key=q.__getitem__)
    assert not board.is_capture(best) and q[best] > 0.5
    assert q[chess.Move.from_uci("f3e5")] < 0.35  # Nxe5 Nxe5: a knight for a pawn
    assert q[chess.Move.from_uci("f1a6")] < 0.3  # Ba6 bxa6 hangs a bishop
