"""The warehouse reads the assets share: bucket games by split, the panel's roster, a bucket's players and diversity,
the ladder and the rated games. One place, so that every asset reads a bucket the same way.

Which bucket an experiment reads: a main experiment's is its cap's (`bucket_games`, over its months); a diversity
arm's is its own (`ablation_bucket_games`, keyed by `variant` = the arm), built from the arm's games by the same SQL.
Both are split by `md5(game_id)` into train / val / test. An arm is trained on its own train split and measured on
its own test split (the quality bar, the state advantage's `HELD_OUT`); the diversity study adds the cap bucket's
test split (`BUCKET_HELD_OUT`), the same positions for every arm of a dial.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from transcend_pipeline.experiments import Experiment


def bucket_moves_query(experiment: Experiment, split: str, months: Sequence[str]) -> tuple[str, list]:
    """SQL and parameters for the moves of one split of the experiment's bucket, in a stable order."""
    if experiment.variant:
        return (
            "SELECT s.moves FROM ablation_bucket_games AS b JOIN ablation_staging AS s USING (variant, game_id) "
            "WHERE b.variant = ? AND b.split = ? ORDER BY b.game_id",
            [experiment.arm, split],
        )
    return (
        "SELECT s.moves FROM bucket_games AS b JOIN stg_games AS s USING (month, game_id) "
        "WHERE b.cap = ? AND b.split = ? AND list_contains(?::VARCHAR[], b.month) ORDER BY b.month, b.game_id",
        [experiment.cap, split, list(months)],
    )


def bucket_moves(connection: duckdb.DuckDBPyConnection, experiment: Experiment, split: str, months: Sequence[str]):
    """The moves of one split of the experiment's bucket, as lists of UCI strings."""
    return [list(moves) for (moves,) in connection.execute(*bucket_moves_query(experiment, split, months)).fetchall()]


def cap_bucket_pairings(connection: duckdb.DuckDBPyConnection, cap: int, months: Sequence[str]) -> list[dict]:
    """Every game of the cap's bucket as its pairing (month, players, written Elos), in a stable order: what a
    diversity arm replays."""
    return (
        connection.execute(
            "SELECT s.month, s.white, s.black, s.white_elo, s.black_elo FROM bucket_games AS b "
            "JOIN stg_games AS s USING (month, game_id) WHERE b.cap = ? AND list_contains(?::VARCHAR[], b.month) "
            "ORDER BY b.month, b.game_id",
            [cap, list(months)],
        )
        .fetch_arrow_table()
        .to_pylist()
    )


def sampled_bucket_moves(
    connection: duckdb.DuckDBPyConnection, cap: int, months: Sequence[str], *, seed: int, limit: int
) -> list[list[str]]:
    """Up to `limit` games of the cap's bucket (every split), a stable pseudo-random pick by `seed`."""
    return [
        list(moves)
        for (moves,) in connection.execute(
            "SELECT s.moves FROM bucket_games AS b JOIN stg_games AS s USING (month, game_id) "
            "WHERE b.cap = ? AND list_contains(?::VARCHAR[], b.month) ORDER BY md5(b.month || b.game_id || ?) LIMIT ?",
            [cap, list(months), str(seed), limit],
        ).fetchall()
    ]


def latest_panel_roster(connection: duckdb.DuckDBPyConnection, months: Sequence[str]) -> list[dict]:
    """The panel's players (`panel_players`) as of the latest of `months` that has them: who played the games."""
    return (
        connection.execute(
            "SELECT * FROM panel_players WHERE month = "
            "(SELECT max(month) FROM panel_players WHERE list_contains(?::VARCHAR[], month))",
            [list(months)],
        )
        .fetch_arrow_table()
        .to_pylist()
    )


def bucket_player_shares(connection: duckdb.DuckDBPyConnection, experiment: Experiment) -> dict[str, float]:
    """Each player of the experiment's bucket and its share of the bucket's player appearances."""
    table, key, value = (
        ("ablation_bucket_players", "variant", experiment.arm)
        if experiment.variant
        else ("bucket_players", "cap", experiment.cap)
    )
    return dict(connection.execute(f"SELECT player, share FROM {table} WHERE {key} = ?", [value]).fetchall())


def arm_players(connection: duckdb.DuckDBPyConnection, arm: str) -> list[str]:
    """A diversity arm's players, most games first."""
    (players,) = connection.execute(
        "SELECT list(player ORDER BY games DESC, player) FROM ablation_bucket_players WHERE variant = ?", [arm]
    ).fetchone()
    return list(players or [])


def diversity_row(connection: duckdb.DuckDBPyConnection, experiment: Experiment) -> dict[str, Any]:
    """The `bucket_diversity` row of the experiment's bucket: its cap's, or its arm's own; {} before it is built."""
    table, column, key = (
        ("ablation_bucket_diversity", "variant", experiment.arm)
        if experiment.variant
        else ("bucket_diversity", "cap", experiment.cap)
    )
    cursor = connection.execute(f"SELECT * FROM {table} WHERE {column} = ?", [key])
    row = cursor.fetchone()
    return dict(zip([c[0] for c in cursor.description], row, strict=True)) if row else {}


def ladder_and_book(connection: duckdb.DuckDBPyConnection) -> tuple[list, list, float]:
    """The ladder members, the opening book and the reporting scale `opponent_ladder` stored."""
    import chess

    from transcend_pipeline.ladder import Member
    from transcend_pipeline.play import Opening

    rows = connection.execute("SELECT * FROM ladder ORDER BY position").fetch_arrow_table().to_pylist()
    scale = rows[0]["scale"]
    members = [Member.from_row({k: v for k, v in row.items() if k not in ("position", "scale")}) for row in rows]
    book = []
    for name, line in connection.execute("SELECT name, moves FROM opening_book ORDER BY line").fetchall():
        board = chess.Board()
        sans = tuple(board.san_and_push(chess.Move.from_uci(uci)) for uci in line)
        book.append(Opening("?", name, tuple(board.move_stack), sans))
    return members, book, scale


RATED_TABLES = ("ladder_games", "arm_baseline_games", "evaluation_games")


def rated_games(connection: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every game of the run: the ladder's and its baselines, the arms' own baselines, every model's — in a fixed
    order, whatever order parallel experiments wrote them in (a fit's last digits depend on the order of its sums)."""
    from transcend_pipeline.warehouse import table_exists

    return [
        row
        for table in RATED_TABLES
        if table_exists(connection, table)
        for row in connection.execute(f"SELECT * FROM {table} ORDER BY ALL").fetch_arrow_table().to_pylist()
    ]


def table_rows(connection: duckdb.DuckDBPyConnection, table: str, order_by: str = "") -> list[dict]:
    """Every row of a table as dicts ([] if it does not exist yet)."""
    from transcend_pipeline.warehouse import table_exists

    if not table_exists(connection, table):
        return []
    order = f" ORDER BY {order_by}" if order_by else ""
    return connection.execute(f"SELECT * FROM {table}{order}").fetch_arrow_table().to_pylist()


def experiment_panel(connection: duckdb.DuckDBPyConnection, experiment: Experiment, config, months: Sequence[str]):
    """The panel that played the experiment's training games (a variant's for a diversity arm) and the players of
    its bucket as rows of that panel, best first, each with its `share` of the bucket's player appearances (what
    a cross-entropy model's mixture weighs them by)."""
    from transcend_pipeline.ablation import arm_panel

    arm_config, players = arm_panel(config, experiment.variant, latest_panel_roster(connection, months), experiment.cap)
    shares = bucket_player_shares(connection, experiment)
    return arm_config, [{**row, "share": shares[row["player"]]} for row in players if row["player"] in shares]


def lowest_temperature_gains(connection: duckdb.DuckDBPyConnection, experiment: str, source: str) -> list[float]:
    """The per-position gains of an experiment's state analysis on one source, at its lowest temperature."""
    return [
        gain
        for (gain,) in connection.execute(
            "SELECT gain FROM state_advantage_positions WHERE experiment = ? AND source = ? AND temperature = "
            "(SELECT min(temperature) FROM state_advantage_positions WHERE experiment = ?) ORDER BY position",
            [experiment, source, experiment],
        ).fetchall()
    ]


def model_games(connection: duckdb.DuckDBPyConnection, experiment: str, phase: str | None = None) -> list[tuple]:
    """(pairing, game, moves as text, the model's colour) of the experiment's evaluation games, of one `phase` if
    given, in play order."""
    phase_filter = "" if phase is None else " AND phase = ?"
    return connection.execute(
        "SELECT pairing, game, moves, player_colour FROM evaluation_games "
        f"WHERE experiment = ? AND player_kind = 'model'{phase_filter} ORDER BY pairing, game",
        [experiment] if phase is None else [experiment, phase],
    ).fetchall()


def test_split_games(
    connection: duckdb.DuckDBPyConnection, cap: int, months: Sequence[str], limit: int, arm: str | None = None
) -> list[tuple[str, list[str]]]:
    """(id, moves) of up to `limit` games of a bucket's test split — the cap's, or arm `arm`'s own — a stable
    pseudo-random pick by the hash of their id, so a real month's test split is never read whole."""
    if arm is not None:
        rows = connection.execute(
            "SELECT b.game_id, s.moves FROM ablation_bucket_games AS b "
            "JOIN ablation_staging AS s USING (variant, game_id) "
            "WHERE b.variant = ? AND b.split = 'test' ORDER BY md5(b.game_id) LIMIT ?",
            [arm, limit],
        ).fetchall()
        return [(f"{arm}/{game_id}", list(moves)) for game_id, moves in rows]
    rows = connection.execute(
        "SELECT b.month, b.game_id, s.moves FROM bucket_games AS b JOIN stg_games AS s USING (month, game_id) "
        "WHERE b.cap = ? AND b.split = 'test' AND list_contains(?::VARCHAR[], b.month) "
        "ORDER BY md5(b.month || b.game_id) LIMIT ?",
        [cap, list(months), limit],
    ).fetchall()
    return [(f"{month}/{game_id}", list(moves)) for month, game_id, moves in rows]
