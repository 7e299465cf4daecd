"""The DuckDB warehouse: short-lived connections, lock-aware, with transactional partition writes.

A DuckDB file admits one writing process at a time (a second process cannot even
open it read-only). Work that takes long — decompressing and parsing a month,
running a model — therefore happens *outside* the database, staged to Parquet,
and only the final swap happens inside: one transaction that deletes a
partition's old rows and inserts the new ones. Connections retry while another
process holds the file, so concurrent partitions of a backfill serialise on
that short swap instead of failing. The Dagster layer adds a concurrency pool
on top, so the retry is a safety net rather than the mechanism.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from transcend_pipeline import lake as lake_tables

LOCK_MESSAGES = ("Could not set lock", "Conflicting lock", "database is locked")


def _is_lock_error(error: Exception) -> bool:
    return any(message in str(error) for message in LOCK_MESSAGES)


def connect(path: Path | str | None, *, read_only: bool = False, timeout_s: float = 900.0) -> duckdb.DuckDBPyConnection:
    """Open the warehouse, waiting (with jittered backoff) while another process holds its lock; None opens an
    in-memory database, for work on the lake alone."""
    if path is None:
        return duckdb.connect()
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            if not _is_lock_error(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


@contextmanager
def open_warehouse(
    path: Path | str | None, *, read_only: bool = False, lake: Path | str | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection that is always closed, so the file lock is held as briefly as possible.

    With `lake`, the lake's Delta tables (`games`, `games_quarantine`, `stg_games`) are readable by name too
    (`transcend_pipeline.lake.attach`), in place of any table of the same name in the file.
    """
    connection = connect(path, read_only=read_only)
    try:
        if lake is not None:
            lake_tables.attach(connection, lake)
        yield connection
    finally:
        connection.close()


def table_exists(connection: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'", [table]
    ).fetchone()
    return bool(row and row[0])


def replace_partition(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    partition_column: str,
    partition_value: str,
    select_sql: str,
    parameters: list | None = None,
) -> int:
    """Atomically replace one partition's rows of `table` with the rows of `select_sql`; return the row count.

    The table is created from the query's shape on first use. Everything runs in
    one transaction: a failure leaves the previous rows exactly as they were, and
    rerunning a partition never duplicates rows.
    """
    connection.execute("BEGIN TRANSACTION")
    try:
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM ({select_sql}) WITH NO DATA", parameters
        )
        connection.execute(f"DELETE FROM {table} WHERE {partition_column} = ?", [partition_value])
        connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM ({select_sql})", parameters)
        (count,) = connection.execute(
            f"SELECT count(*) FROM {table} WHERE {partition_column} = ?", [partition_value]
        ).fetchone()
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return int(count)


def replace_table(
    connection: duckdb.DuckDBPyConnection, table: str, select_sql: str, parameters: list | None = None
) -> int:
    """Atomically rebuild a whole table from a query; readers see the old or the new table, never a mix."""
    connection.execute("BEGIN TRANSACTION")
    try:
        connection.execute(f"CREATE OR REPLACE TABLE {table} AS {select_sql}", parameters)
        (count,) = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return int(count)


def replace_with_rows(
    connection: duckdb.DuckDBPyConnection, table: str, rows: list[dict], *, partition: tuple[str, str] | None = None
) -> int:
    """Write Python rows (dicts) atomically: the whole `table`, or one `(column, value)` partition of it."""
    import pyarrow as pa

    connection.register("python_rows", pa.Table.from_pylist(rows))
    try:
        if partition:
            return replace_partition(connection, table, *partition, "SELECT * FROM python_rows")
        return replace_table(connection, table, "SELECT * FROM python_rows")
    finally:
        connection.unregister("python_rows")
