"""Bytes a game on disk, from games that are not repeated, beside the repeated corpus of bench_ingest.py.

bench_ingest.py's corpus repeats 999 real games with new ids, so compression sees each game's tags and moves
again and again: its bytes a game are a lower bound. Here each source is ingested once, as the `games` asset
does (`ingest_month`, then the `stg_games` month with `sql_models.materialize`), into a fresh DuckDB file and a
fresh lake, with moves for no game (`--moves-max-elo 0`), for games of both Elos <= 1500 (the default) and for
every game; the repeated corpus is measured in the same run for the other end of the bracket:

* `real-999`: the 2021-10 dump's first 999 games, unique. A real month is ~10^5 times larger: its Parquet
  row groups and DuckDB segments are full (headers and dictionaries amortised) and its players, openings and
  time controls repeat across its games, which dictionaries and compression exploit; so this is likely *above*
  a real month's bytes a game (an upper bracket). It is also the month's first minutes only.
* `real-api-866`: one player's 866 games (2019-2022), as a month; one player, so names repeat more than in
  a month of Lichess (lower), but the games are few (higher). A cross-check, not a bound.
* `panel`: a synthetic panel month (`--panel-dump`, e.g. the `demo` profile's 12,000 games; by default a
  `smoke` month of 240 games is generated), unique games but of a few dozen players and engine-made moves, so
  names compress far better than Lichess's; moves are unique.
* `repeated-N`: the bench_ingest corpus (the 999 games repeated, ids made unique): the lower bracket.

The DuckDB file stores data in 256 KiB blocks, so the file size of a small table says little (999 games fit in
one block). Its bytes are estimated from `pragma_storage_info` instead: each segment counts from its offset to
the next segment's offset in the same block, or to the block's end when it is the block's last (so a partly
filled last block counts in full), plus the extra blocks a segment spans; and each source goes into a file of
16 KiB blocks (DuckDB's smallest) as well as one of the default 256 KiB, so that the unknown tail is 16 KiB,
not 256 (the `(256 KiB)` column of a 999-game table is one block over 999 rows). Smaller blocks also cap
segments at 16 KiB, which can only cost compression; the two agree on the 100k-game corpus. The lake's bytes are exact: its Parquet files, with each column's compressed size
from the files' metadata (delta-rs writes snappy); the Delta log is listed apart.

What it showed (lake, bytes a game of `games`, no moves / moves <= 1500 / all moves): the repeated corpus 22 / 48 /
114, the unique 999 games 80 / 116 / 184. Without moves the unique games pay for player names (27 bytes a game
against 1) and the ids (`site` repeats `game_id` behind a fixed URL: 12 of the 23); with moves, the moves are 75-90%
of a game in stg_games, 112 bytes a game unique against 85 repeated. The excerpt spans minutes, so its utc_time
costs 0.4 bytes where a month's spread of times costs ~8 (the API export, the panel month).

    .venv/bin/python benchmarks/bench_storage.py                                   # smoke panel month, 100k repeated
    .venv/bin/python benchmarks/bench_storage.py --panel-dump raw/panel-demo/lichess_db_standard_rated_2025-01.pgn.zst
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import SAMPLE, build_corpus

from transcend_pipeline.ingest import ingest_month
from transcend_pipeline.lake import LOG_FOLDER
from transcend_pipeline.sql_models import PROJECT_ROOT, discover_models, load_vars, materialize
from transcend_pipeline.warehouse import open_warehouse

API_EXPORT = SAMPLE.with_name("lichess_api_export_cubicinfinity_2019-2022_866games.pgn")
TABLES = ("games", "games_quarantine", "stg_games")
CAPS = {"no moves": 0, "moves <= 1500": 1500, "all moves": None}
MONTH = "2021-10"
BLOCK_SIZES = (16_384, 262_144)  # DuckDB's smallest block and its default
TOP_COLUMNS = 6


def duckdb_bytes(database: Path) -> dict[str, dict[str, int]]:
    """{table: {column: bytes}} for the file's tables, from the segments' block offsets (see the docstring)."""
    with duckdb.connect(str(database), read_only=True) as connection:
        (block_size,) = connection.execute("SELECT block_size FROM pragma_database_size()").fetchone()
        segments = []
        for table in TABLES:
            if not connection.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()[0]:
                continue
            rows = connection.execute(
                "SELECT column_name, block_id, block_offset, len(additional_block_ids) "
                f"FROM pragma_storage_info('{table}') WHERE persistent AND block_id >= 0"
            ).fetchall()
            segments += [(table, *row) for row in rows]
    by_block: dict[int, list[tuple[int, str, str, int]]] = collections.defaultdict(list)
    for table, column, block, offset, extra in segments:
        by_block[block].append((offset, table, column, extra))
    sizes: dict[str, dict[str, int]] = collections.defaultdict(lambda: collections.defaultdict(int))
    for entries in by_block.values():
        entries.sort()
        for index, (offset, table, column, extra) in enumerate(entries):
            end = entries[index + 1][0] if index + 1 < len(entries) else block_size
            sizes[table][column] += end - offset + extra * block_size
    return {table: dict(columns) for table, columns in sizes.items()}


def lake_bytes(lake: Path) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """({table: {column: compressed bytes}}, {table: bytes of its Parquet files}); and the logs under 'log:'."""
    columns: dict[str, dict[str, int]] = {}
    files: dict[str, int] = {}
    for table in TABLES:
        folder = lake / table
        if not folder.is_dir():
            continue
        per_column: dict[str, int] = collections.defaultdict(int)
        for path in folder.rglob("*.parquet"):
            files[table] = files.get(table, 0) + path.stat().st_size
            metadata = pq.ParquetFile(path).metadata
            for group in range(metadata.num_row_groups):
                for index in range(metadata.num_columns):
                    chunk = metadata.row_group(group).column(index)
                    per_column[chunk.path_in_schema.split(".")[0]] += chunk.total_compressed_size
        columns[table] = dict(per_column)
        files[f"log:{table}"] = sum(path.stat().st_size for path in (folder / LOG_FOLDER).rglob("*") if path.is_file())
    return columns, files


def ingest_both(source: Path, work: Path, cap: int | None) -> tuple[dict[int, Path], Path, dict]:
    """The source ingested once into a fresh DuckDB file of each block size and once into a fresh lake, stg_games
    built in each."""
    models, variables = discover_models(PROJECT_ROOT), load_vars(PROJECT_ROOT, target="lichess")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    databases, lake = {size: work / f"warehouse-{size}.duckdb" for size in BLOCK_SIZES}, work / "lake"
    for size, database in databases.items():
        with duckdb.connect() as connection:  # an empty file of that block size, which ingest_month then opens
            connection.execute(f"ATTACH '{database}' AS fresh (BLOCK_SIZE {size})")
        result = ingest_month(source, MONTH, database, staging_dir=work / "staging", moves_max_elo=cap)
        counts = {"games": result.games_accepted, "games_quarantine": result.games_quarantined}
        with open_warehouse(database) as connection:
            counts["stg_games"] = materialize(connection, models["stg_games"], variables, month=MONTH)
            connection.execute("CHECKPOINT")
    ingest_month(source, MONTH, None, staging_dir=work / "staging", moves_max_elo=cap, lake=lake)
    with open_warehouse(None, lake=lake) as connection:
        materialize(connection, models["stg_games"], variables, month=MONTH, lake=lake)
    counts["read"] = result.games_read
    return databases, lake, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panel-dump", type=Path, help="a panel month's .pgn.zst (default: generate a smoke month)")
    parser.add_argument("--repeated-games", type=int, default=100_000, help="games of the repeated corpus")
    parser.add_argument("--columns", action="store_true", help="print every column, not the largest few")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        work = Path(tmp)
        panel = args.panel_dump or _smoke_panel_month(work)
        sources = {
            "real-999": SAMPLE,
            "real-api-866": API_EXPORT,
            "panel": panel,
            f"repeated-{args.repeated_games // 1000}k": build_corpus(work, args.repeated_games),
        }
        print(f"panel month: {panel}; DuckDB {duckdb.__version__}")
        print(
            f"{'source':<14} {'moves':<13} {'table':<17} {'rows':>8} {'lake B/row':>10} {'file B/row':>10} "
            f"{'(256 KiB)':>9}  largest columns in the lake: lake (file 16 KiB / 256 KiB blocks) bytes a row"
        )
        for name, source in sources.items():
            for moves, cap in CAPS.items():
                databases, lake, counts = ingest_both(source, work / "run", cap)
                in_file = {size: duckdb_bytes(database) for size, database in databases.items()}
                small, default = (in_file[size] for size in BLOCK_SIZES)
                in_lake, lake_files = lake_bytes(lake)
                for table in TABLES:
                    rows = counts[table]
                    if not rows:
                        print(f"{name:<14} {moves:<13} {table:<17} {rows:>8,}")
                        continue
                    columns = in_lake.get(table, {})
                    shown = sorted(columns, key=columns.get, reverse=True)
                    shown = shown if args.columns else shown[:TOP_COLUMNS]
                    breakdown = ", ".join(
                        f"{column} {columns[column] / rows:.1f} ({small.get(table, {}).get(column, 0) / rows:.1f}/"
                        f"{default.get(table, {}).get(column, 0) / rows:.1f})"
                        for column in shown
                    )
                    print(
                        f"{name:<14} {moves:<13} {table:<17} {rows:>8,} {lake_files.get(table, 0) / rows:>10.1f} "
                        f"{sum(small.get(table, {}).values()) / rows:>10.1f} "
                        f"{sum(default.get(table, {}).values()) / rows:>9.1f}  {breakdown}"
                    )
                read = counts["read"]
                log = sum(size for key, size in lake_files.items() if key.startswith("log:"))
                print(
                    f"{name:<14} {moves:<13} {'all three':<17} {read:>8,} "
                    f"{sum(lake_files.get(table, 0) for table in TABLES) / read:>10.1f} "
                    f"{sum(sum(small.get(table, {}).values()) for table in TABLES) / read:>10.1f} "
                    f"{sum(sum(default.get(table, {}).values()) for table in TABLES) / read:>9.1f}  a game read; "
                    f"files on disk {', '.join(f'{path.stat().st_size / 1e6:.2f}' for path in databases.values())} "
                    f"MB, Delta logs {log / 1e3:.0f} kB"
                )


def _smoke_panel_month(work: Path) -> Path:
    from transcend_pipeline.panel import PanelConfig, write_month_dump
    from transcend_pipeline.settings import find_stockfish

    result = write_month_dump(
        PanelConfig.for_profile("smoke"), "2025-01", work / "panel", stockfish_path=find_stockfish()
    )
    return result.path


if __name__ == "__main__":
    main()
