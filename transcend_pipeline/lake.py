"""The lake warehouse: the monthly tables as Delta Lake tables that many processes and machines may write at once.

A DuckDB file admits one writing process, so with it every month's ingest waits
for the others. A Delta table is a folder of Parquet files plus a log of
numbered commits, each created only if absent, so writers need no lock, only a
filesystem or object store. With `TRANSCEND_WAREHOUSE=lake`, `games`,
`games_quarantine` and every `incremental_by_month` SQL model (`stg_games`) live
here, one table per folder, partitioned by `month`; the whole-table models
(the buckets) stay in the DuckDB file, whose one writer they never lacked.

**A month is replaced in one commit.** `replace_month` writes the month's new
Parquet files, then commits one log entry that removes the month's old files and
adds the new ones (`write_deltalake(mode="overwrite", predicate="month = '…'")`,
delta-rs's replaceWhere, which also refuses rows of another month). A reader
sees the old month or the new one; a failure before the commit leaves only
unreferenced files (`DeltaTable.vacuum` removes them) and the previous rows; a
rerun replaces, never appends.

**Concurrent writers.** delta-rs commits optimistically: a writer that finds
another commit ahead of its own checks it for conflicts and retries. Writers of
different months touch disjoint partitions, so each commits after at most a few
retries and no row is lost; a new table is created first, in a commit of its
own (`create_if_absent`), because a creation conflicts with every other commit.
Two overlapping writers of the *same* month conflict (each removes files the
other's predicate reads): the first to commit wins whole, the other fails with
`MonthWriteConflict` and its files stay unreferenced, so the month always holds
exactly one writer's complete rows, never a mix or a duplicate. A rerun then replaces the month again, as any rerun
does (as does a writer that reads the table after the other's commit).

**DuckDB reads the lake with the same SQL.** `attach` makes each table a
temporary view on a DuckDB connection, under the table's name, over the Parquet
files of its latest version (`DeltaTable.file_uris()`, read by DuckDB's own
Parquet reader, `month` from the files' partition folders), so `FROM games` in a
model or a quality gate scans the lake, a `month = …` filter skips other months'
files, and no DuckDB extension is needed (`INSTALL delta` would download one).
DuckDB's reader knows each file's row counts and statistics and keeps its
buffers under DuckDB's memory limit; through an Arrow dataset the bucket rebuild
passed 9 GiB at 16M rows of `stg_games` (benchmarks/bench_buckets.py). An
object store's files are read the same way, through delta-rs's own store
wrapped as an fsspec filesystem (DuckDB reads S3 itself only with its httpfs
extension, which its wheel does not bundle). A lake's name shadows a table of
the same name in the DuckDB file.

**Where a lake lives.** `TRANSCEND_LAKE` is a local (or mounted) folder, or an
object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`) that every worker
machine reaches; each table is a folder (a key prefix) below it. delta-rs reads
an object store's endpoint and credentials from its own environment variables
(`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, …), so none is in a file or in run
config. A commit must be created only if absent: delta-rs 1.x does it with a
conditional write (`If-None-Match: *`), which S3 honours since late 2024, as do
MinIO and R2; on a store that ignores it, concurrent writers could overwrite
each other's commits.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb
import pyarrow as pa

from transcend_pipeline.settings import is_url

PARTITION_COLUMN = "month"
LOG_FOLDER = "_delta_log"


class MonthWriteConflict(RuntimeError):
    """Another writer replaced the same month of the same table first; this writer's rows were not committed."""


def table_path(lake: Path | str, table: str) -> Path | str:
    return f"{str(lake).rstrip('/')}/{table}" if is_url(lake) else Path(lake) / table


def tables(lake: Path | str) -> list[str]:
    """The names of the Delta tables in the lake (each a folder with a transaction log), sorted."""
    if is_url(lake):  # listed through delta-rs's own object store, configured as its writes are
        import pyarrow.fs as fs
        from deltalake import DeltaTable
        from deltalake.fs import DeltaStorageHandler

        store = fs.PyFileSystem(DeltaStorageHandler(str(lake)))
        entries = store.get_file_info(fs.FileSelector("", allow_not_found=True))
        folders = (entry.base_name for entry in entries if entry.type == fs.FileType.Directory)
        return sorted(name for name in folders if DeltaTable.is_deltatable(table_path(lake, name)))
    lake = Path(lake)
    if not lake.is_dir():
        return []
    return sorted(folder.name for folder in lake.iterdir() if (folder / LOG_FOLDER).is_dir())


def replace_month(lake: Path | str, table: str, month: str, rows: pa.Table | pa.RecordBatchReader) -> None:
    """Replace `month`'s rows of `table` with `rows` in one commit, creating the table on first use.

    `rows` may be a stream (a `RecordBatchReader`), so a month need not fit in memory; every row must belong to
    `month`, or nothing is committed.
    """
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError

    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}", month):
        raise ValueError(f"month must be 'YYYY-MM', got {month!r}")
    path = table_path(lake, table)
    create_if_absent(path, rows.schema)
    try:
        write_deltalake(
            path, rows, mode="overwrite", predicate=f"{PARTITION_COLUMN} = '{month}'", partition_by=[PARTITION_COLUMN]
        )
    except CommitFailedError as error:
        raise MonthWriteConflict(f"{table} {month}: another writer replaced this month first ({error})") from error


def create_if_absent(path: Path | str, schema: pa.Schema) -> None:
    """Create the empty table at `path` unless it exists, in a commit of its own.

    Writers of different months never conflict, except when the first writes of a new table race: each write would
    create the table, a metadata change that conflicts with every other commit, and all but one failed (11 of 15
    trials of three writers). delta-rs also retries a creation that lost the race as a later version, a second
    metadata change (5 of 15). So the table is created first, in one attempt, never retried: a loser finds the
    winner's table and writes into it.
    """
    from deltalake import CommitProperties, DeltaTable
    from deltalake.exceptions import DeltaError

    if DeltaTable.is_deltatable(str(path)):
        return
    try:
        DeltaTable.create(
            path,
            schema,
            mode="ignore",
            partition_by=[PARTITION_COLUMN],
            commit_properties=CommitProperties(max_commit_retries=0),
        )
    except DeltaError:  # another writer created it between the look and the commit
        if not DeltaTable.is_deltatable(str(path)):
            raise


def attach(connection: duckdb.DuckDBPyConnection, lake: Path | str) -> list[str]:
    """Make every table of the lake readable by name on `connection`, at its latest version; return the names.

    Call it again after a write to see the new version: each name is a snapshot of its table's files.
    """
    from deltalake import DeltaTable

    from transcend_pipeline.sql_models import sql_literal  # here: sql_models imports this module

    names = tables(lake)
    for name in names:
        table = DeltaTable(table_path(lake, name))
        files = table.file_uris()
        if not files:  # read_parquet needs a file; an empty table's schema comes from its log
            connection.register(name, table.to_pyarrow_dataset())
            continue
        if is_url(lake):
            store = _object_store(str(lake))
            files = [f"{store.protocol}://{uri.removeprefix(str(lake).rstrip('/') + '/')}" for uri in files]
            if store.protocol not in connection.list_filesystems():
                connection.register_filesystem(store)
        columns = ", ".join(f'"{field.name}"' for field in table.schema().fields)  # the table's order, month included
        connection.execute(  # a view takes no parameters: the file list is a literal
            f'CREATE OR REPLACE TEMP VIEW "{name}" AS SELECT {columns} FROM read_parquet({sql_literal(files)}, '
            f"hive_partitioning = true, hive_types = {{'{PARTITION_COLUMN}': VARCHAR}}, union_by_name = true)"
        )
    return names


def _object_store(lake: str):
    """delta-rs's own object store for `lake` (configured as its writes are, from the environment), as an fsspec
    filesystem DuckDB can read Parquet from, under a protocol of this lake's own (`lake<hash>://games/month=…`):
    DuckDB reads S3 itself only with its httpfs extension, which its wheel does not bundle."""
    import pyarrow.fs as fs
    from deltalake.fs import DeltaStorageHandler
    from fsspec.implementations.arrow import ArrowFSWrapper

    prefix = "lake" + hashlib.sha256(lake.encode()).hexdigest()[:12]

    class LakeStore(ArrowFSWrapper):
        protocol = prefix

        @classmethod
        def _strip_protocol(cls, path):  # fsspec's default would read `games` in `lake…://games/…` as a host
            return path.removeprefix(f"{prefix}://") if isinstance(path, str) else list(map(cls._strip_protocol, path))

    return LakeStore(fs.PyFileSystem(DeltaStorageHandler(lake)))
