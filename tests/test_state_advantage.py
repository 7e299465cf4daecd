"""The state-level analysis: exact expected rewards, gains and their statistics, positions with their history,
Stockfish rewards, the figures, and the Dagster asset on a small hand-made warehouse."""

from __future__ import annotations

import io
import random
from pathlib import Path

import chess
import chess.pgn
import duckdb
import numpy as np
import pytest
import torch

from transcend_pipeline.inference import legal_move_distribution
from transcend_pipeline.model import ChessFormer, config_for
from transcend_pipeline.state_advantage import (
    BUCKET_HELD_OUT,
    HELD_OUT,
    OWN_GAMES,
    SOURCES,
    GainSummary,
    Position,
    PositionAnalysis,
    SourceGame,
    analyse_positions,
    game_bootstrap_interval,
    load_source_games,
    markdown_section,
    model_probabilities,
    plot_concentration_curves,
    plot_gain_concentration,
    plot_gain_histogram,
    plot_top_positions,
    position_rows,
    sample_positions,
    sample_sources,
    score_positions,
    summarise,
    summary_table,
    top_share,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCHOLARS_MATE = ["e2e4", "e7e5", "d1h5", "b8c6", "f1c4", "g8f6"]  # White to move: Qxf7#


def board_after(moves: list[str]) -> chess.Board:
    board = chess.Board()
    for uci in moves:
        board.push_uci(uci)
    return board


def analysis(
    rewards: list[float], probs: dict[float, list[float]], source: str = OWN_GAMES, game: str = "g"
) -> PositionAnalysis:
    """A position whose first len(rewards) legal moves carry the given rewards and probabilities."""
    board = chess.Board()
    moves = list(board.legal_moves)[: len(rewards)]
    return PositionAnalysis(
        Position(source, game, board), moves, np.array(rewards), {t: np.array(p) for t, p in probs.items()}
    )


def random_games(count: int, seed: int, max_plies: int = 40) -> list[list[str]]:
    rng = random.Random(seed)
    games = []
    for _ in range(count):
        board, moves = chess.Board(), []
        for _ in range(rng.randint(10, max_plies)):
            legal = list(board.legal_moves)
            if not legal:
                break
            move = rng.choice(legal)
            moves.append(move.uci())
            board.push(move)
        games.append(moves)
    return games


@pytest.fixture(scope="module")
def tiny_model() -> ChessFormer:
    torch.manual_seed(0)
    model = ChessFormer(config_for("tiny"))
    with torch.no_grad():  # sharpen the random init so low temperatures differ clearly from τ = 1
        for parameter in model.parameters():
            parameter.mul_(5)
    return model.eval()


def test_every_temperature_from_one_pass_matches_a_pass_at_that_temperature(tiny_model: ChessFormer) -> None:
    rng = random.Random(5)
    boards = []
    for plies in range(0, 60, 4):
        board = chess.Board()
        while board.ply() < plies and not board.is_game_over():
            board.push(rng.choice(list(board.legal_moves)))
        if not board.is_game_over():
            boards.append(board)
    temperatures = [0.0, 0.001, 0.1, 0.75, 1.5]
    derived = model_probabilities(tiny_model, boards, temperatures, batch_size=5)
    assert sorted(derived) == [*temperatures[:4], 1.0, 1.5]
    for temperature in temperatures:
        direct = legal_move_distribution(tiny_model, boards, temperature)
        for (moves, probs), expected_moves, expected in zip(
            derived[temperature], direct.moves, direct.probs, strict=True
        ):
            assert moves == expected_moves
            assert probs == pytest.approx(expected[: len(moves)].double().numpy(), abs=1e-4)


def test_expected_reward_and_gain_match_a_hand_computed_case() -> None:
    case = analysis([0.2, 0.5, 0.9], {1.0: [0.5, 0.3, 0.2], 0.001: [0.0, 0.0, 1.0], 2.0: [0.4, 0.3, 0.3]})
    assert case.expected_reward(1.0) == pytest.approx(0.5 * 0.2 + 0.3 * 0.5 + 0.2 * 0.9)  # 0.43
    assert case.gain(0.001) == pytest.approx(0.9 - 0.43)
    assert case.gain(2.0) == pytest.approx(0.08 + 0.15 + 0.27 - 0.43)
    assert case.gain(1.0) == 0.0
    assert case.best_move == case.moves[2]
    assert case.model_move == case.moves[0] and not case.agrees


def test_agreement_counts_any_move_scored_best() -> None:
    assert analysis([0.2, 0.9, 0.9], {1.0: [0.2, 0.1, 0.7]}).agrees
    assert analysis([0.2, 0.9, 0.9], {1.0: [0.2, 0.7, 0.1]}).agrees
    assert not analysis([0.2, 0.9, 0.8], {1.0: [0.2, 0.1, 0.7]}).agrees


def test_game_bootstrap_is_wider_than_a_position_bootstrap_when_games_differ() -> None:
    """Five games of 40 positions each, every game with its own level: the positions of one game are not independent,
    so resampling whole games gives a clearly wider interval than resampling positions (each its own "game"), and the
    same interval on a seeded rerun."""
    rng = np.random.default_rng(3)
    levels = np.array([-0.3, -0.1, 0.0, 0.2, 0.5])
    values = np.repeat(levels, 40) + 0.02 * rng.standard_normal(200)
    games = np.repeat([f"g{i}" for i in range(5)], 40).tolist()
    low, high = game_bootstrap_interval(values, games, seed=7)
    assert low < values.mean() < high
    assert (low, high) == game_bootstrap_interval(values, games, seed=7)
    assert (low, high) != game_bootstrap_interval(values, games, seed=8)
    by_position = game_bootstrap_interval(values, list(range(200)), seed=7)
    assert by_position[0] < values.mean() < by_position[1]
    assert high - low > 3 * (by_position[1] - by_position[0])
    assert game_bootstrap_interval([0.25] * 10, ["a", "b"] * 5, seed=0) == pytest.approx((0.25, 0.25))


def test_summary_intervals_resample_games_and_cover_the_absolute_reward() -> None:
    rng = np.random.default_rng(0)
    cases = []
    for g in range(4):
        for _ in range(6):
            high = 0.2 * g + 0.3 + 0.05 * rng.random()  # the best move's reward rises with the game
            cases.append(analysis([0.1, high], {1.0: [0.5, 0.5], 0.001: [0.0, 1.0]}, HELD_OUT, f"game{g}"))
    summary = summarise(cases, 0.001, experiment="x", source=HELD_OUT, seed=3)
    assert (summary.positions, summary.games) == (24, 4)
    assert summary.reward_low <= summary.mean_reward <= summary.reward_high
    assert summary.reward_low < summary.reward_high
    rewards = [case.expected_reward(0.001) for case in cases]
    gains = [case.gain(0.001) for case in cases]
    games = [case.position.game for case in cases]
    assert summary.mean_reward == pytest.approx(np.mean(rewards))
    assert (summary.reward_low, summary.reward_high) == game_bootstrap_interval(rewards, games, seed=3)
    assert (summary.gain_low, summary.gain_high) == game_bootstrap_interval(gains, games, seed=3)
    assert summary.gain_low <= summary.mean_gain <= summary.gain_high
    assert GainSummary(**summary.as_row()) == summary


def test_top_share_of_a_constructed_distribution() -> None:
    gains = [0.0] * 10 + [0.25] * 8 + [5.0, 3.0]  # 20 positions: the top 10% are the 5 and the 3 of a total of 10
    assert top_share(random.Random(0).sample(gains, len(gains))) == pytest.approx(0.8)
    assert top_share([1.0] * 10) == pytest.approx(0.1)  # an even spread: the top tenth carries a tenth
    assert top_share([1.0] * 25) == pytest.approx(3 / 25)  # ceil(2.5) positions
    assert top_share([-1.0, 0.5]) is None and top_share([]) is None


def test_summary_gain_is_zero_at_temperature_one_and_rows_cover_every_cell() -> None:
    analyses = [
        analysis([0.1, 0.9], {1.0: [0.5, 0.5], 0.001: [0.0, 1.0]}, OWN_GAMES),
        analysis([0.4, 0.6], {1.0: [0.4, 0.6], 0.001: [1.0, 0.0]}, OWN_GAMES),
        analysis([0.3, 0.7], {1.0: [0.8, 0.2], 0.001: [0.0, 1.0]}, HELD_OUT),
    ]
    table = summary_table(analyses, experiment="x")
    assert [(row.source, row.temperature, row.positions) for row in table] == [
        (OWN_GAMES, 0.001, 2),
        (OWN_GAMES, 1.0, 2),
        (HELD_OUT, 0.001, 1),
        (HELD_OUT, 1.0, 1),
    ]
    own_low, own_one = table[0], table[1]
    assert own_low.games == 1 and own_low.reward_low <= own_low.mean_reward <= own_low.reward_high
    assert own_low.mean_gain == pytest.approx((0.9 - 0.5 + 0.4 - 0.52) / 2)
    assert own_one.mean_gain == 0.0 and (own_one.gain_low, own_one.gain_high) == (0.0, 0.0)
    assert own_low.agreement == 0.5  # the first position's argmax (a tie: the first move) is the worse move
    rows = position_rows(analyses, experiment="x")
    assert len(rows) == 6 and {row["temperature"] for row in rows} == {0.001, 1.0}
    assert all(row["gain"] == 0.0 for row in rows if row["temperature"] == 1.0)


def test_positions_from_a_pgn_keep_their_history_and_only_the_models_side() -> None:
    pgn = '[Event "x"]\n[White "model"]\n[Black "opponent"]\n\n1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 4. Ba4 Nf6 1/2-1/2\n'
    game = chess.pgn.read_game(io.StringIO(pgn))
    moves = [move.uci() for move in game.mainline_moves()]
    positions = sample_positions([SourceGame("g1", moves, chess.WHITE)], OWN_GAMES, 100, seed=0)
    assert [position.ply for position in positions] == [0, 2, 4, 6]
    for position in positions:
        assert position.board.turn == chess.WHITE and position.source == OWN_GAMES
        assert [move.uci() for move in position.board.move_stack] == moves[: position.ply]
        assert position.board == board_after(moves[: position.ply])
    both_sides = sample_positions([SourceGame("g1", moves), SourceGame("g2", moves)], HELD_OUT, 100, seed=0)
    assert [position.ply for position in both_sides] == list(range(8))  # the repeated game adds nothing


def test_sampling_is_seeded_and_distinct() -> None:
    games = [SourceGame(f"g{i}", moves, chess.BLACK) for i, moves in enumerate(random_games(20, seed=2))]
    first = sample_positions(games, OWN_GAMES, 30, seed=5)
    assert [p.history for p in first] == [p.history for p in sample_positions(games, OWN_GAMES, 30, seed=5)]
    assert [p.history for p in first] != [p.history for p in sample_positions(games, OWN_GAMES, 30, seed=6)]
    assert len({p.history for p in first}) == 30 and all(p.board.turn == chess.BLACK for p in first)


def test_stockfish_gives_the_mating_move_the_highest_reward(stockfish_path: str) -> None:
    boards = [board_after(SCHOLARS_MATE), board_after(["e2e4"])]
    mate, opening = score_positions(boards, stockfish_path, depth=4, workers=2)
    assert set(mate) == set(boards[0].legal_moves) and set(opening) == set(boards[1].legal_moves)
    assert max(mate, key=mate.get) == chess.Move.from_uci("h5f7")
    assert mate[chess.Move.from_uci("h5f7")] > 0.99 > max(v for m, v in mate.items() if m.uci() != "h5f7")
    assert all(0.0 < value < 1.0 for value in opening.values())


@pytest.fixture(scope="module")
def analysed(tiny_model: ChessFormer, stockfish_path: str) -> list[PositionAnalysis]:
    games = [SourceGame(f"g{i}", moves, chess.WHITE) for i, moves in enumerate(random_games(6, seed=3))]
    positions = sample_positions(games, OWN_GAMES, 10, seed=0)
    positions.append(Position(HELD_OUT, "mate", board_after(SCHOLARS_MATE)))
    return analyse_positions(tiny_model, positions, stockfish_path, temperatures=(0.0, 0.001, 0.5), depth=2)


def test_analysis_of_a_real_model_and_engine(analysed: list[PositionAnalysis]) -> None:
    for case in analysed:
        assert case.moves == list(case.position.board.legal_moves)
        assert sorted(case.probs) == [0.0, 0.001, 0.5, 1.0]
        for probs in case.probs.values():
            assert probs.sum() == pytest.approx(1.0, abs=1e-5) and len(probs) == len(case.moves)
        assert case.rewards.min() - 1e-9 <= case.expected_reward(0.5) <= case.rewards.max() + 1e-9
        assert case.gain(1.0) == 0.0
        argmax = case.moves.index(case.model_move)
        assert case.probs[0.0][argmax] == 1.0
        assert case.expected_reward(0.0) == pytest.approx(case.rewards[argmax])
    mate = analysed[-1]
    assert mate.best_move == chess.Move.from_uci("h5f7")
    assert mate.agrees == (mate.model_move == mate.best_move)


def test_figures_are_pngs_and_the_section_links_them(analysed: list[PositionAnalysis], tmp_path: Path) -> None:
    figures = {
        "histogram": plot_gain_histogram(analysed, [0.001, 0.5], tmp_path / "h.png", title="t"),
        "concentration": plot_gain_concentration(analysed, [0.001, 0.5], tmp_path / "c.png", title="t"),
        "boards": plot_top_positions(analysed, 0.001, tmp_path / "b.png", count=2),
    }
    for figure in figures.values():
        data = figure.path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
        assert figure.markdown.startswith(f"![{figure.path.stem}](data:image/png;base64,")
    table = summary_table(analysed, experiment="cap1000")
    section = markdown_section(table, {label: figure.path.name for label, figure in figures.items()})
    low = next(row for row in table if row.source == OWN_GAMES and row.temperature == 0.001)
    assert (
        f"| cap1000 | own games | 0.001 | 10 ({low.games}) | {100 * low.mean_reward:.2f} "
        f"[{100 * low.reward_low:.2f}, {100 * low.reward_high:.2f}] | {100 * low.mean_gain:+.2f} "
        f"[{100 * low.gain_low:+.2f}, {100 * low.gain_high:+.2f}] |"
    ) in section
    assert "resample whole games" in section
    assert "games | 1 |" not in section and "out | 1 |" not in section  # τ = 1 is the baseline, not a row
    assert "![boards](b.png)" in section and "![histogram](h.png)" in section


def write_warehouse(path: Path, games: list[list[str]], month: str) -> None:
    """Games 0–3 are the model's (0 and 1 confirmatory), the rest a clone's; games 0–2 are the test split; the
    panel's smoke players 10–13 are rated 1040, 990, 900, 800, so player 11 is the 1000 bucket's best, and the
    bucket's players 11–13 have shares 0.5, 0.3 and 0.2 of its moves."""
    with duckdb.connect(str(path)) as connection:
        connection.execute(
            "CREATE TABLE evaluation_games (experiment VARCHAR, phase VARCHAR, pairing BIGINT, game BIGINT, "
            "player_kind VARCHAR, player_colour VARCHAR, moves VARCHAR)"
        )
        for i, moves in enumerate(games):
            connection.execute(
                "INSERT INTO evaluation_games VALUES (?, ?, 0, ?, ?, ?, ?)",
                [
                    "cap1000",
                    "confirm" if i < 2 else "sweep",
                    i,
                    "model" if i < 4 else "clone",
                    "white" if i % 2 == 0 else "black",
                    " ".join(moves),
                ],
            )
        connection.execute(
            "CREATE TABLE panel_players (month VARCHAR, player VARCHAR, player_index BIGINT, rating BIGINT)"
        )
        for index, rating in zip(range(10, 14), (1040, 990, 900, 800), strict=True):
            connection.execute("INSERT INTO panel_players VALUES (?, ?, ?, ?)", [month, f"p{index}", index, rating])
        # the bucket's players and their share of its moves: the mixture's weights
        connection.execute("CREATE TABLE bucket_players (cap INTEGER, player VARCHAR, share DOUBLE)")
        for player, share in (("p11", 0.5), ("p12", 0.3), ("p13", 0.2)):
            connection.execute("INSERT INTO bucket_players VALUES (1000, ?, ?)", [player, share])
        connection.execute("CREATE TABLE stg_games (month VARCHAR, game_id VARCHAR, moves VARCHAR[])")
        connection.execute("CREATE TABLE bucket_games (cap INTEGER, month VARCHAR, game_id VARCHAR, split VARCHAR)")
        for i, moves in enumerate(games):
            connection.execute("INSERT INTO stg_games VALUES (?, ?, ?)", [month, f"id{i}", moves])
            connection.execute(
                "INSERT INTO bucket_games VALUES (1000, ?, ?, ?)", [month, f"id{i}", "test" if i < 3 else "train"]
            )


def test_load_source_games_reads_the_models_games_and_the_test_split(tmp_path: Path) -> None:
    games = random_games(6, seed=4)
    write_warehouse(tmp_path / "w.duckdb", games, "2025-01")
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
        loaded = load_source_games(connection, "cap1000", 1000, ["2025-01"], held_out_games=10)
        assert load_source_games(connection, "cap1000", 1000, ["2024-12"], held_out_games=10)[HELD_OUT] == []
        first_two = load_source_games(connection, "cap1000", 1000, ["2025-01"], held_out_games=2)[HELD_OUT]
        confirmed = load_source_games(connection, "cap1000", 1000, ["2025-01"], held_out_games=2, phase="confirm")
    assert [(g.moves, g.colour) for g in loaded[OWN_GAMES]] == [
        (games[i], chess.WHITE if i % 2 == 0 else chess.BLACK) for i in range(4)
    ]
    held_out = sorted((g.game, list(g.moves), g.colour) for g in loaded[HELD_OUT])
    assert held_out == [(f"2025-01/id{i}", games[i], None) for i in range(3)]
    assert [g.game for g in first_two] == [g.game for g in loaded[HELD_OUT]][:2]  # a stable pick, not a new draw
    assert [g.moves for g in confirmed[OWN_GAMES]] == games[:2]


def write_arms(path: Path, arms: dict[str, list[list[str]]]) -> None:
    """The diversity study's variant tables: per arm, games a0, a1, … (the same ids in every arm), all but the last
    in the test split."""
    with duckdb.connect(str(path)) as connection:
        connection.execute(
            "CREATE TABLE ablation_staging (variant VARCHAR, month VARCHAR, game_id VARCHAR, moves VARCHAR[])"
        )
        connection.execute(
            "CREATE TABLE ablation_bucket_games (variant VARCHAR, cap INTEGER, month VARCHAR, game_id VARCHAR, "
            "split VARCHAR)"
        )
        for variant, games in arms.items():
            for i, moves in enumerate(games):
                connection.execute(
                    "INSERT INTO ablation_staging VALUES (?, '2025-01', ?, ?)", [variant, f"a{i}", moves]
                )
                split = "test" if i < len(games) - 1 else "train"
                connection.execute(
                    "INSERT INTO ablation_bucket_games VALUES (?, 1000, '2025-01', ?, ?)", [variant, f"a{i}", split]
                )


def test_an_arm_reads_its_own_test_split_and_the_buckets(tmp_path: Path) -> None:
    games = random_games(10, seed=6)
    arms = {"rho1": games[6:9], "k3": [games[9], games[6], games[7]]}
    write_warehouse(tmp_path / "w.duckdb", games[:6], "2025-01")
    write_arms(tmp_path / "w.duckdb", arms)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
        default = load_source_games(connection, "cap1000", 1000, ["2025-01"], held_out_games=10)
        loaded = {
            arm: load_source_games(connection, arm, 1000, ["2025-01"], held_out_games=10, variant=arm) for arm in arms
        }
        one = load_source_games(connection, "k3", 1000, ["2025-01"], held_out_games=1, variant="k3")
    assert set(default) == {OWN_GAMES, HELD_OUT}  # no arm, no third source
    for arm, sources in loaded.items():
        assert set(sources) == set(SOURCES)
        assert sources[OWN_GAMES] == []  # the arm has played no evaluation games here
        own_split = sorted((g.game, list(g.moves), g.colour) for g in sources[HELD_OUT])
        assert own_split == [(f"{arm}/a{i}", arms[arm][i], None) for i in range(2)]  # its test split, not another arm's
        assert sources[BUCKET_HELD_OUT] == default[HELD_OUT]  # the default bucket's test split, in the same order
    assert [g.game for g in one[HELD_OUT]] == [g.game for g in loaded["k3"][HELD_OUT]][:1]
    rho, k3 = (sample_sources(loaded[arm], 25, seed=0, skip_plies={HELD_OUT: 2}) for arm in arms)
    assert {p.source for p in rho} == {HELD_OUT, BUCKET_HELD_OUT}  # the empty source is skipped
    assert min(p.ply for p in rho if p.source == HELD_OUT) >= 2
    common = [[p.history for p in positions if p.source == BUCKET_HELD_OUT] for positions in (rho, k3)]
    assert common[0] == common[1] and len(common[0]) == 25  # every arm is measured on the same positions


def test_concentration_curves_of_several_arms_on_one_figure(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    curves = {
        "ρ = 0": rng.exponential(size=50) - 0.2,
        "ρ = 1": rng.normal(0.05, 0.1, size=80),
        "k = 1": [-0.1, 0.05],  # a net loss: named, not drawn
    }
    figure = plot_concentration_curves(curves, tmp_path / "arms" / "concentration.png", title="every arm")
    data = figure.path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
    assert figure.path == tmp_path / "arms" / "concentration.png"


def test_sampling_can_skip_the_opening() -> None:
    games = [SourceGame(f"g{i}", moves) for i, moves in enumerate(random_games(5, seed=8))]
    positions = sample_positions(games, HELD_OUT, 1000, seed=0, skip_plies=8)
    assert positions and min(p.ply for p in positions) == 8
    assert len(positions) == sum(max(0, len(g.moves) - 8) for g in games)


@pytest.mark.slow
def test_asset_writes_tables_figures_and_metadata_and_reruns_without_duplicates(
    transcend_home: Path, tiny_model: ChessFormer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from transcend_pipeline.defs.analysis import state_advantage
    from transcend_pipeline.defs.resources import (
        EvaluationSettings,
        PanelSource,
        StateAdvantageSettings,
        TranscendHome,
    )

    monkeypatch.setenv("TRANSCEND_MONTHS", "2025-01")
    write_warehouse(transcend_home / "warehouse.duckdb", random_games(8, seed=5), "2025-01")
    checkpoint = transcend_home / "checkpoints" / "cap1000" / "best.ckpt"
    checkpoint.parent.mkdir(parents=True)
    state_dict = {f"model.{key}": value for key, value in tiny_model.state_dict().items()}
    torch.save({"transcend": {"config": tiny_model.config.to_dict()}, "state_dict": state_dict}, checkpoint)
    resources = {
        "home": TranscendHome(path=str(transcend_home)),
        "dump_source": PanelSource(profile="smoke"),
        "advantage": StateAdvantageSettings.for_profile("smoke"),
        "evaluation": EvaluationSettings.for_profile("smoke"),
    }
    for _ in range(2):
        result = dg.materialize([state_advantage], partition_key="cap1000", resources=resources)
        assert result.success
    metadata = result.asset_materializations_for_node("state_advantage")[0].metadata
    assert metadata["positions"].value == 24 and metadata["dagster/row_count"].value == 48
    assert "| cap1000 | own games | 0.001 | 12 (" in metadata["summary"].value
    assert "data:image/png;base64," in metadata["gain histogram"].value
    assert "| cap1000 | own games | clone(p11) | 12 (2) |" in metadata["argmax_comparison"].value
    with duckdb.connect(str(transcend_home / "warehouse.duckdb"), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM state_advantage_positions").fetchone()[0] == 48
        assert connection.execute("SELECT count(*), count(DISTINCT source) FROM state_advantage").fetchone() == (4, 2)
        compared = connection.execute(
            "SELECT source, kind, policy, positions FROM argmax_comparison ORDER BY source, kind"
        ).fetchall()
        summaries = [
            GainSummary(**row) for row in connection.sql("SELECT * FROM state_advantage").to_arrow_table().to_pylist()
        ]
    assert all(row.top10_share is None and row.mean_gain == 0.0 for row in summaries if row.temperature == 1.0)
    assert markdown_section(summaries).count("| cap1000 |") == 2  # read back, the rows render: one per source
    # the bucket's rated players p11 (best), p12, p13 are the experts
    panel_rows = [
        ("clone", "clone(p11)"),
        ("consensus", "consensus(3 players, weighted)"),
        ("expert", "player(p12)"),
        ("expert", "player(p13)"),
        ("expert_argmax", "clone(p12)"),
        ("expert_argmax", "clone(p13)"),
        ("model", "model τ→0"),
        ("player", "player(p11)"),
    ]
    assert sorted(compared) == [
        (source, kind, policy, 12) for source in sorted((HELD_OUT, OWN_GAMES)) for kind, policy in panel_rows
    ]
    out_dir = transcend_home / "reports" / "state_advantage" / "cap1000"
    assert {path.name for path in out_dir.iterdir()} == {
        "gain_histogram.png",
        "gain_concentration.png",
        "top_positions.png",
        "state_advantage.md",
    }
    report = (out_dir / "state_advantage.md").read_text()
    assert "![largest gains](top_positions.png)" in report and "the best player's clone" in report
