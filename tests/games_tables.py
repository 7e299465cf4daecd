"""Games tables shaped like the ingestion's `games`, for tests and benchmarks: hand-made rows or generated in SQL."""

from __future__ import annotations

from pathlib import Path

import duckdb

from transcend_pipeline.ingest import GAMES_DDL, MOVE_TYPE_DDL
from transcend_pipeline.sql_models import discover_models, materialize, topological_order

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


def build_models(connection: duckdb.DuckDBPyConnection, root: Path, variables: dict, months: list[str]) -> dict:
    """Materialise every model of the project in dependency order, every month for monthly ones; row counts."""
    models = discover_models(root)
    counts = {}
    for name in topological_order(models):
        if models[name].partitioned_by_month:
            counts[name] = sum(materialize(connection, models[name], variables, month=month) for month in months)
        else:
            counts[name] = materialize(connection, models[name], variables)
    return counts
