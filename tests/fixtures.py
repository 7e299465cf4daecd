"""Shared test helpers (pytest's fixtures are conftest.py's): where the real samples are, games tables shaped like
the ingestion's, toy games with a learnable rule, and hand-made months built through the Dagster assets. Kept out
of the package, so editing them changes no checkpoint's code version; benchmarks import them too.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import chess
import chess.pgn
import dagster as dg
import duckdb
import numpy as np
import zstandard

from transcend_pipeline.ingest import GAMES_DDL, MOVE_TYPE_DDL
from transcend_pipeline.lichess import dump_filename
from transcend_pipeline.sql_models import discover_models, materialize, topological_order

if TYPE_CHECKING:
    from transcend_pipeline.defs.resources import PanelSource

REPO_ROOT = Path(__file__).resolve().parents[1]
LICHESS_SAMPLES = REPO_ROOT.parent / "shared" / "data" / "lichess-samples"
SAMPLE_2021_10 = "lichess_2021-10_dump_excerpt_999games.pgn"
SAMPLE_2013_01 = "lichess_2013-01_dump_excerpt_10games.pgn"
SAMPLE_API_EXPORT = "lichess_api_export_cubicinfinity_2019-2022_866games.pgn"  # variants, casual games, `?` Elos
MONTH = "2025-01"  # the month of hand-made months


def publish(directory: Path, month: str, pgn: bytes) -> Path:
    """Write a month as Lichess does (zstd) and list it in sha256sums.txt."""
    path = directory / dump_filename(month)
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(pgn))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with (directory / "sha256sums.txt").open("a") as sums:
        sums.write(f"{digest}  {path.name}\n")
    return path


def games_in(pgn: Path) -> int:
    """How many games python-chess reads in the file: what a month's `games_read` must be."""
    count = 0
    with pgn.open() as handle:
        while chess.pgn.read_headers(handle) is not None:
            count += 1
    return count


DEFAULT_MOVES = ["e2e4", "e7e5", "g1f3", "b8c6", "f1b5", "a7a6", "b5a4", "g8f6", "e1g1", "f8e7", "f1e1", "b7b5"]


def create_games_table(connection: duckdb.DuckDBPyConnection) -> None:
    """The ingestion's own `games` table, moves as its ENUM `uci_move`."""
    connection.execute(MOVE_TYPE_DDL)
    connection.execute(GAMES_DDL)


def insert_games(connection: duckdb.DuckDBPyConnection, rows: list[dict]) -> None:
    """Insert hand-made games; every column not given takes a value that lets the game enter a bucket."""
    create_games_table(connection)
    for row in rows:
        moves = row.get("moves", DEFAULT_MOVES)
        game = {
            "month": "2021-10",
            "site": f"https://lichess.org/{row['game_id']}",
            "event": "Rated Blitz game",
            "rated": True,
            "variant": "Standard",
            "speed": "blitz",
            "base_seconds": 180,
            "increment_seconds": 0,
            "white": "alice",
            "black": "bob",
            "white_elo": 900,
            "black_elo": 950,
            "white_rating_diff": 5,
            "black_rating_diff": -5,
            "white_title": None,
            "black_title": None,
            "result": "1-0",
            "termination": "Normal",
            "utc_time": "2021-10-01 12:00:00",
            "eco": "C60",
            "opening": "Ruy Lopez",
            "moves": moves,
            "ply_count": len(moves),
            "has_clock": True,
            "has_eval": False,
        } | row
        columns = ", ".join(game)
        connection.execute(
            f"INSERT INTO games ({columns}) VALUES ({', '.join('?' for _ in game)})", list(game.values())
        )


def generate_games(
    connection: duckdb.DuckDBPyConnection,
    count: int,
    *,
    month: str = "2021-10",
    players: int = 2000,
    max_moves: int = 24,
    id_prefix: str = "g",
) -> None:
    """Append `count` random games of `month`, generated inside DuckDB (10M rows in seconds).

    Each player has a fixed Elo between 700 and 1599; about 1% of Elos are unknown,
    1% of games unrated, 0.5% BOT, 0.5% abandoned, 0.2% unfinished ('*'). Openings
    are drawn, skewed, from a pool of 65,536 random lines, so that frequent positions
    exist beside a long tail; `moves` holds at most `max_moves` plies (the opening is
    what the models read).
    """
    create_games_table(connection)
    connection.execute(
        """
        INSERT INTO games
        WITH lines AS (  -- a pool of opening lines, so that generating moves costs a join, not a list per game
            SELECT
                line_id,
                list_transform(
                    range($max_moves),
                    lambda k: ['e2e4', 'd2d4', 'c2c4', 'g1f3', 'e7e5', 'c7c5', 'g8f6', 'd7d5'][1 + floor(random() ** 2 * 8)::INTEGER]
                ) AS line
            FROM range(65536) AS t(line_id)
        ),
        draws AS (
            SELECT
                i,
                floor(random() ** 3 * 65536)::INTEGER AS line_id,
                floor(random() * $players)::INTEGER AS w,
                floor(random() * $players)::INTEGER AS b,
                floor(random() * 121)::INTEGER AS plies,
                random() AS r_rated, random() AS r_elo, random() AS r_bot, random() AS r_term, random() AS r_result
            FROM range($count) AS t(i)
        )
        SELECT
            $month,
            $prefix || '-' || $month || '-' || i,
            'https://lichess.org/' || i,
            'Rated Blitz game',
            r_rated > 0.01,
            'Standard',
            'blitz',
            180,
            0,
            'p' || w,
            'p' || b,
            CASE WHEN r_elo < 0.01 THEN NULL ELSE 700 + (w * 37) % 900 END::SMALLINT,
            (700 + (b * 37) % 900)::SMALLINT,
            3::SMALLINT,
            -3::SMALLINT,
            CASE WHEN r_bot < 0.005 THEN 'BOT' END,
            NULL,
            CASE WHEN r_result < 0.002 THEN '*' WHEN r_result < 0.47 THEN '1-0' WHEN r_result < 0.93 THEN '0-1'
                 ELSE '1/2-1/2' END,
            CASE WHEN r_term < 0.005 THEN 'Abandoned' WHEN r_term < 0.3 THEN 'Time forfeit' ELSE 'Normal' END,
            TIMESTAMP '2021-10-01' + to_seconds(i % 2500000),
            'C20',
            'King''s Pawn Game',
            line[1:plies],
            plies::SMALLINT,
            TRUE,
            FALSE
        FROM draws JOIN lines USING (line_id)
        """,
        {"players": players, "count": count, "month": month, "max_moves": max_moves, "prefix": id_prefix},
    )


def build_models(
    connection: duckdb.DuckDBPyConnection,
    root: Path,
    variables: dict,
    months: list[str],
    lake: Path | str | None = None,
) -> dict:
    """Materialise every model of the project in dependency order, every month for monthly ones (in `lake`, if
    given); row counts."""
    models = discover_models(root)
    counts = {}
    for name in topological_order(models):
        if models[name].partitioned_by_month:
            counts[name] = sum(
                materialize(connection, models[name], variables, month=month, lake=lake) for month in months
            )
        else:
            counts[name] = materialize(connection, models[name], variables)
    return counts


_CAPTURE_ORDER = {chess.QUEEN: 5, chess.ROOK: 4, chess.BISHOP: 3, chess.KNIGHT: 2, chess.PAWN: 1}


def greedy_capture_games(count: int, seed: int = 0, max_plies: int = 120) -> list[list[str]]:
    """Capture the most valuable piece when possible (ties broken at random), otherwise play a uniformly random
    legal move."""
    rng = np.random.default_rng(seed)
    games = []
    for _ in range(count):
        board, moves = chess.Board(), []
        while len(moves) < max_plies and not board.is_game_over(claim_draw=False):
            legal = list(board.generate_legal_moves())
            captures = [m for m in legal if board.piece_type_at(m.to_square)]
            if captures:
                best = max(_CAPTURE_ORDER[board.piece_type_at(m.to_square)] for m in captures)
                legal = [m for m in captures if _CAPTURE_ORDER[board.piece_type_at(m.to_square)] == best]
            move = legal[int(rng.integers(len(legal)))]
            moves.append(move.uci())
            board.push(move)
        games.append(moves)
    return games


def random_game(rng: random.Random, white: str, black: str, white_elo: int, black_elo: int, index: int) -> str:
    board = chess.Board()
    while not board.is_game_over() and board.ply() < 40:
        board.push(rng.choice(list(board.legal_moves)))
    game = chess.pgn.Game.from_board(board)
    game.headers.clear()
    tags = {
        "Event": "Rated Blitz game",
        "Site": f"https://lichess.org/t{index:07d}",
        "Date": "2025.01.02",
        "Round": "-",
        "White": white,
        "Black": black,
        "Result": rng.choice(["1-0", "0-1", "1/2-1/2"]),
        "UTCDate": "2025.01.02",
        "UTCTime": "12:00:00",
        "WhiteElo": str(white_elo),
        "BlackElo": str(black_elo),
        "ECO": "?",
        "Opening": "?",
        "TimeControl": "300+0",
        "Termination": "Normal",
    }
    for name, value in tags.items():
        game.headers[name] = value
    return str(game) + "\n\n"


@dataclass
class BuiltMonth:
    """A hand-made month materialised through raw_dump, games, the SQL models and their gates."""

    source: PanelSource
    resources: dict
    instance: dg.DagsterInstance
    ingest: dg.ExecuteInProcessResult
    buckets: dg.ExecuteInProcessResult


def build_month(home: Path, texts: list[str], lake: Path | str | None = None) -> BuiltMonth:
    """Write `texts` as the smoke panel's dump of MONTH and materialise the warehouse from it (gates may fail);
    with `lake`, as TRANSCEND_WAREHOUSE=lake does."""
    from transcend_pipeline.defs.ingestion import games, raw_dump
    from transcend_pipeline.defs.partitions import MODELS
    from transcend_pipeline.defs.resources import PanelSource, TranscendHome
    from transcend_pipeline.defs.warehouse import quality_gates, sql_model_assets

    source = PanelSource(profile="smoke")
    path = home / "raw" / source.label / dump_filename(MONTH)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress("".join(texts).encode()))
    resources = {"home": TranscendHome(path=str(home), lake_path=str(lake or "")), "dump_source": source}
    instance = dg.DagsterInstance.get()
    monthly = [asset for asset in sql_model_assets if MODELS[asset.key.path[-1]].partitioned_by_month]
    tables = [asset for asset in sql_model_assets if not MODELS[asset.key.path[-1]].partitioned_by_month]
    ingest = dg.materialize(
        [raw_dump, games, *monthly], partition_key=f"{MONTH}-01", resources=resources, instance=instance
    )
    buckets = dg.materialize([*tables, *quality_gates], resources=resources, instance=instance, raise_on_error=False)
    return BuiltMonth(source, resources, instance, ingest, buckets)
