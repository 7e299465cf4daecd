"""The panel's monthly dump: deterministic, Lichess-shaped, read back move for move; engines always quit."""

from __future__ import annotations

import dataclasses
import io
import os
import re
from pathlib import Path

import chess
import chess.pgn
import duckdb
import pytest
import zstandard

from transcend_pipeline.engine import Engine, EngineError
from transcend_pipeline.ingest import ingest_month
from transcend_pipeline.panel import PanelConfig, panel_players, write_month_dump
from transcend_pipeline.panel.dump import _play_chunk
from transcend_pipeline.panel.pool import worker_pool

LICHESS_TAG_ORDER = [
    "Event", "Site", "Date", "Round", "White", "Black", "Result", "UTCDate", "UTCTime", "WhiteElo", "BlackElo",
    "WhiteRatingDiff", "BlackRatingDiff", "ECO", "Opening", "TimeControl", "Termination",
]  # fmt: skip
SMOKE = PanelConfig.for_profile("smoke")


def stockfish_descendants() -> list[int]:
    """Stockfish processes started (directly or through workers) by this test process."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), stat[stat.index("(") + 1 : stat.rindex(")")])
    found = []
    for pid, (_, name) in parents.items():
        ancestor = pid
        while ancestor in parents and ancestor != os.getpid():
            ancestor = parents[ancestor][0]
        if ancestor == os.getpid() and "stockfish" in name and pid != os.getpid():
            found.append(pid)
    return found


@pytest.fixture(scope="module")
def smoke_dump(tmp_path_factory: pytest.TempPathFactory, stockfish_path: str) -> Path:
    result = write_month_dump(
        SMOKE, "2024-02", tmp_path_factory.mktemp("dump"), stockfish_path=stockfish_path, workers=2
    )
    assert result.games == SMOKE.games_per_month
    return result.path


def read_games(path: Path) -> list[chess.pgn.Game]:
    with zstandard.open(path, "rt", encoding="utf-8") as text:
        stream = io.StringIO(text.read())
    games = []
    while (game := chess.pgn.read_game(stream)) is not None:
        games.append(game)
    return games


def test_same_seed_gives_a_byte_identical_dump_on_any_worker_count(
    smoke_dump: Path, tmp_path: Path, stockfish_path: str
) -> None:
    again = write_month_dump(SMOKE, "2024-02", tmp_path, stockfish_path=stockfish_path, workers=1)
    assert again.path.read_bytes() == smoke_dump.read_bytes()
    other_seed = write_month_dump(
        dataclasses.replace(SMOKE, seed=SMOKE.seed + 1, games_per_month=10),
        "2024-02",
        tmp_path / "other",
        stockfish_path=stockfish_path,
        workers=1,
    )
    assert other_seed.sha256 != again.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lichess_db_standard_rated_2024-02.pgn.zst", "other"]


def test_games_have_lichess_tags_in_order_and_legal_movetext(smoke_dump: Path) -> None:
    with zstandard.open(smoke_dump, "rt", encoding="utf-8") as text:
        raw = text.read()
    tag_blocks = re.findall(r"((?:\[\w+ \"[^\"]*\"\]\n)+)\n1\. ", raw)
    assert len(tag_blocks) == SMOKE.games_per_month
    assert all(re.findall(r"^\[(\w+) ", block, re.MULTILINE) == LICHESS_TAG_ORDER for block in tag_blocks)
    games = read_games(smoke_dump)
    sites = set()
    for game in games:
        assert game.errors == []
        assert game.headers["Event"] == "Rated Blitz game" and game.headers["Round"] == "-"
        assert re.fullmatch(r"https://lichess\.org/[0-9A-Za-z]{8}", game.headers["Site"])
        sites.add(game.headers["Site"])
        assert game.headers["UTCDate"].startswith("2024.02.") and game.headers["Date"] == game.headers["UTCDate"]
        assert int(game.headers["WhiteElo"]) > 0 and int(game.headers["BlackElo"]) > 0
        assert re.fullmatch(r"[+-]\d+", game.headers["WhiteRatingDiff"])
        assert game.headers["Termination"] in {"Normal", "Time forfeit"}
        board = game.end().board()
        if board.is_checkmate():
            assert game.headers["Result"] == board.result()
        else:
            assert game.headers["Result"] in {"1-0", "0-1", "1/2-1/2"}
        assert all(node.clock() is not None for node in game.mainline())
    assert len(sites) == len(games)


def test_ratings_come_from_the_month_and_players_are_reported(smoke_dump: Path) -> None:
    rows = panel_players(SMOKE, "2024-02", smoke_dump)
    assert [row["player_index"] for row in rows] == list(range(SMOKE.n_players))
    assert sum(row["games"] for row in rows) == 2 * SMOKE.games_per_month
    ratings = [row["rating"] for row in rows]
    assert sorted(ratings)[len(ratings) // 2 - 1] <= 1500 <= sorted(ratings)[len(ratings) // 2]
    assert ratings[0] > ratings[-1]  # the best player by construction is rated above the weakest
    assert all(row["rating"] is None and row["games"] == 0 for row in panel_players(SMOKE, "2024-02"))


def test_every_game_reads_back_through_the_ingestion_move_for_move(smoke_dump: Path, tmp_path: Path) -> None:
    expected = {game.headers["Site"]: [move.uci() for move in game.mainline_moves()] for game in read_games(smoke_dump)}
    warehouse = tmp_path / "warehouse.duckdb"
    result = ingest_month(smoke_dump, "2024-02", warehouse, staging_dir=tmp_path / "staging")
    assert (result.games_read, result.games_quarantined) == (SMOKE.games_per_month, 0)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        stored = dict(connection.execute("SELECT site, moves FROM games").fetchall())
    assert stored == expected


def test_engine_quits_on_errors(stockfish_path: str) -> None:
    with pytest.raises(ZeroDivisionError), Engine(stockfish_path) as engine:
        assert engine.score_moves(chess.Board())[chess.Move.from_uci("e2e4")] > 0.4
        assert stockfish_descendants() == [engine.pid]
        1 / 0  # noqa: B018
    assert stockfish_descendants() == []
    with pytest.raises(EngineError):
        Engine("/nonexistent/stockfish")


def test_scores_cover_every_legal_move_with_truncated_multipv(stockfish_path: str) -> None:
    board = chess.Board("r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3")
    with Engine(stockfish_path) as full, Engine(stockfish_path, multipv=4, floor_cp=50) as top:
        everything, truncated = full.score_moves(board), top.score_moves(board)
    assert set(everything) == set(truncated) == set(board.legal_moves)
    assert max(everything, key=everything.__getitem__) == max(truncated, key=truncated.__getitem__)
    assert len(set(truncated.values())) == 5  # four lines, and one floor for the rest
    assert everything[chess.Move.from_uci("f3g5")] < 0.2  # Ng5?? drops the knight


def test_workers_and_engines_are_gone_after_an_interrupted_month(tmp_path: Path, stockfish_path: str) -> None:
    def interrupt(games: int, seconds: float) -> None:
        assert stockfish_descendants(), "the workers' engines should be running mid-month"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_month_dump(SMOKE, "2024-03", tmp_path, stockfish_path=stockfish_path, workers=2, progress=interrupt)
    assert stockfish_descendants() == []
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), worker_pool(SMOKE, stockfish_path, workers=1) as run:
        list(run(_play_chunk, ["2024-03"], [0], [[(0, 1)]]))
        raise RuntimeError
    assert stockfish_descendants() == []
