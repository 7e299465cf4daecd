"""ingest_month against a real DuckDB file: counts balance, reruns replace, failures change nothing, months run at once."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from transcend_pipeline import ingest as ingest_module
from transcend_pipeline.ingest import DumpReadError, IngestResult, ingest_month
from transcend_pipeline.pgn import PgnChunk, game_aligned_chunks
from transcend_pipeline.vocab import MOVES
from transcend_pipeline.warehouse import open_warehouse

DUMP_2021 = "lichess_2021-10_dump_excerpt_999games.pgn"
API_EXPORT = "lichess_api_export_cubicinfinity_2019-2022_866games.pgn"


def compress(source: Path, target: Path, frame_bytes: int = 300_000) -> Path:
    """Write `source` as multi-frame zstd, the way Lichess's pzstd files are laid out."""
    data = source.read_bytes()
    compressor = zstandard.ZstdCompressor(level=3)
    target.write_bytes(
        b"".join(compressor.compress(data[at : at + frame_bytes]) for at in range(0, len(data), frame_bytes))
    )
    return target


def month_counts(warehouse: Path, month: str) -> tuple[int, int]:
    with open_warehouse(warehouse, read_only=True) as connection:
        (games,) = connection.execute("SELECT count(*) FROM games WHERE month = ?", [month]).fetchone()
        (quarantined,) = connection.execute("SELECT count(*) FROM games_quarantine WHERE month = ?", [month]).fetchone()
    return games, quarantined


def ingest(dump: Path, month: str, warehouse: Path, staging: Path, **options) -> IngestResult:
    return ingest_month(dump, month, warehouse, staging_dir=staging, **options)


def test_plain_pgn_lands_in_both_tables_and_counts_balance(lichess_samples: Path, tmp_path: Path) -> None:
    reports: list[tuple[int, float]] = []
    result = ingest(
        lichess_samples / API_EXPORT,
        "2022-12",
        tmp_path / "w.duckdb",
        tmp_path / "staging",
        progress=lambda *r: reports.append(r),
    )
    assert (result.games_read, result.games_accepted, result.games_quarantined) == (866, 791, 75)
    assert result.quarantine_reasons == {"non_standard_start": 75}
    assert month_counts(tmp_path / "w.duckdb", "2022-12") == (791, 75)
    assert result.pgn_bytes == result.compressed_bytes == (lichess_samples / API_EXPORT).stat().st_size
    assert reports[-1][0] == 866 and result.games_per_second > 0 and 0 < result.swap_seconds < result.seconds
    assert list((tmp_path / "staging").iterdir()) == []
    with open_warehouse(tmp_path / "w.duckdb", read_only=True) as connection:
        types = dict(
            connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'games'"
            ).fetchall()
        )
        positions = connection.execute("SELECT min(position), max(position) FROM games_quarantine").fetchone()
        (move_values,) = connection.execute("SELECT enum_range(NULL::uci_move)").fetchone()
    assert types["moves"].startswith("ENUM(") and types["moves"].endswith(")[]") and move_values == list(MOVES)
    assert (types["white_elo"], types["utc_time"]) == ("SMALLINT", "TIMESTAMP")
    assert 0 <= positions[0] <= positions[1] < 866


def test_zst_dump_reads_like_the_plain_file(lichess_samples: Path, tmp_path: Path) -> None:
    dump = compress(lichess_samples / DUMP_2021, tmp_path / "lichess_db_standard_rated_2021-10.pgn.zst")
    result = ingest(dump, "2021-10", tmp_path / "w.duckdb", tmp_path / "staging")
    assert (result.games_read, result.games_accepted) == (999, 999)
    assert result.pgn_bytes == (lichess_samples / DUMP_2021).stat().st_size > result.compressed_bytes
    with open_warehouse(tmp_path / "w.duckdb", read_only=True) as connection:
        row = connection.execute(
            "SELECT moves[1:3], ply_count, has_clock FROM games WHERE game_id = 'NRafdioG'"
        ).fetchone()
    assert row == (["e2e4", "c7c5", "g1f3"], 65, True)


def test_rerunning_a_month_replaces_its_rows_and_leaves_other_months(lichess_samples: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    ingest(lichess_samples / DUMP_2021, "2021-09", warehouse, tmp_path / "staging")
    first = ingest(lichess_samples / API_EXPORT, "2021-10", warehouse, tmp_path / "staging")
    second = ingest(lichess_samples / API_EXPORT, "2021-10", warehouse, tmp_path / "staging")
    assert (first.games_accepted, first.games_quarantined) == (second.games_accepted, second.games_quarantined)
    assert month_counts(warehouse, "2021-10") == (791, 75)
    assert month_counts(warehouse, "2021-09") == (999, 0)
    with open_warehouse(warehouse, read_only=True) as connection:
        (duplicates,) = connection.execute(
            "SELECT count(*) FROM (SELECT month, game_id FROM games GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()
    assert duplicates == 0


def test_a_warehouse_made_with_string_moves_takes_new_months(lichess_samples: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    with open_warehouse(warehouse) as connection:  # `games` as it was created before moves became `uci_move[]`
        connection.execute(ingest_module.GAMES_DDL.replace("moves uci_move[]", "moves VARCHAR[]"))
    ingest(lichess_samples / DUMP_2021, "2021-10", warehouse, tmp_path / "staging")
    with open_warehouse(warehouse, read_only=True) as connection:
        row = connection.execute("SELECT typeof(moves), moves[1:3] FROM games WHERE game_id = 'NRafdioG'").fetchone()
    assert row == ("VARCHAR[]", ["e2e4", "c7c5", "g1f3"])


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "empty", "not_pgn"])
def test_a_bad_dump_fails_naming_the_file_and_keeps_the_previous_rows(
    lichess_samples: Path, tmp_path: Path, damage: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    ingest(lichess_samples / DUMP_2021, "2021-10", warehouse, tmp_path / "staging")
    dump = compress(lichess_samples / DUMP_2021, tmp_path / "lichess_db_standard_rated_2021-10.pgn.zst")
    data = dump.read_bytes()
    if damage == "truncated":  # cut inside the last frame, as an interrupted copy would
        dump.write_bytes(data[: int(len(data) * 0.9)])
    elif damage == "corrupt":
        dump.write_bytes(data[: len(data) // 2] + bytes(200) + data[len(data) // 2 + 200 :])
    elif damage == "empty":
        dump.write_bytes(b"")
    else:  # valid zstd, but of one endless line: must fail, not hold it all in memory
        dump.write_bytes(zstandard.ZstdCompressor(level=3).compress(b"x" * (40 << 20)))
    with pytest.raises(DumpReadError, match=str(dump)):
        ingest(dump, "2021-10", warehouse, tmp_path / "staging")
    assert month_counts(warehouse, "2021-10") == (999, 0)
    assert list((tmp_path / "staging").iterdir()) == []


def test_staging_writes_few_large_row_groups_in_order_and_rolls_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "STAGING_ROW_GROUP", 100)
    monkeypatch.setattr(ingest_module, "STAGING_FILE_ROWS", 200)
    schema = pa.schema([("n", pa.int32())])
    with ingest_module._StagingWriter(tmp_path, "staged", schema) as staged:
        for start in range(0, 250, 30):  # tables of 30 rows, as chunks of games come
            staged.write(pa.table({"n": pa.array(range(start, min(start + 30, 250)), pa.int32())}))
    files = sorted(tmp_path.glob("staged-*.parquet"))
    assert [file.name for file in files] == ["staged-00000.parquet", "staged-00001.parquet"]
    metadata = [pq.ParquetFile(file).metadata for file in files]
    groups = [[meta.row_group(i).num_rows for i in range(meta.num_row_groups)] for meta in metadata]
    assert groups == [[120, 120], [10]]
    assert duckdb.execute("SELECT n FROM read_parquet(?)", [staged.pattern]).fetchall() == [(n,) for n in range(250)]


def test_staging_writes_a_file_even_with_no_rows(tmp_path: Path) -> None:
    with ingest_module._StagingWriter(tmp_path, "empty", pa.schema([("n", pa.int32())])):
        pass
    assert pq.read_table(tmp_path / "empty-00000.parquet").num_rows == 0


def test_moves_max_elo_stores_moves_only_for_bucket_candidates(lichess_samples: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    result = ingest(lichess_samples / DUMP_2021, "2021-10", warehouse, tmp_path / "staging", moves_max_elo=1500)
    assert result.games_accepted == 999
    with open_warehouse(warehouse, read_only=True) as connection:
        with_moves, under_cap, under_cap_with_moves = connection.execute(
            "SELECT count(moves), count(*) FILTER (greatest(white_elo, black_elo) <= 1500),"
            " count(moves) FILTER (greatest(white_elo, black_elo) <= 1500 AND len(moves) = ply_count) FROM games"
        ).fetchone()
    assert with_moves == under_cap == under_cap_with_moves >= 307  # SOURCES.md: 307 games have max Elo < 1500


def _slowly(chunks: Iterator[PgnChunk]) -> Iterator[PgnChunk]:
    """Chunks as a slow disk would give them, so that the helper has started before the last of them."""
    for chunk in chunks:
        time.sleep(0.03)
        yield chunk


@pytest.mark.slow
def test_two_workers_write_the_same_rows_as_one(
    lichess_samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks that come slowly, so that both this process and the helper parse some, and quarantined games
    # lie in several.
    monkeypatch.setattr(
        ingest_module, "game_aligned_chunks", lambda pieces: _slowly(game_aligned_chunks(pieces, chunk_bytes=50_000))
    )
    sent_to_helper: list[int] = []  # bytes of each chunk handed over (as a file, or the empty one that starts it)
    submit = ProcessPoolExecutor.submit

    def recording_submit(pool: ProcessPoolExecutor, task, chunk: PgnChunk | Path, *args):
        sent_to_helper.append(chunk.stat().st_size if isinstance(chunk, Path) else len(chunk.text))
        return submit(pool, task, chunk, *args)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", recording_submit)
    source = tmp_path / "both.pgn"
    source.write_bytes((lichess_samples / API_EXPORT).read_bytes() + (lichess_samples / DUMP_2021).read_bytes())
    dump = compress(source, tmp_path / "dump.pgn.zst")
    tables = []
    for workers in (1, 2):
        warehouse = tmp_path / f"w{workers}.duckdb"
        result = ingest(dump, "2021-10", warehouse, tmp_path / "staging", workers=workers, moves_max_elo=1500)
        assert multiprocessing.active_children() == []  # the helpers, stopped during the swap, have exited
        with open_warehouse(warehouse, read_only=True) as connection:
            games = connection.execute("SELECT * FROM games ORDER BY game_id").fetchall()
            quarantine = connection.execute("SELECT * FROM games_quarantine ORDER BY position").fetchall()
        tables.append((games, quarantine, result.games_read, result.quarantine_reasons))
    assert len(tables[0][0]) == 791 + 999 and len(tables[0][1]) == 75
    assert tables[0] == tables[1]
    assert len({row[1] for row in tables[1][0]}) == 791 + 999  # game_id: every game once
    assert {row[1] for row in tables[1][1]} < set(range(866))  # positions count from the dump's first game
    assert 0 < sum(sent_to_helper) < source.stat().st_size  # each process parsed some of the dump
    assert list((tmp_path / "staging").iterdir()) == []  # the chunk files went with the stage


def _ingest_in_child(dump: str, month: str, warehouse: str, staging: str) -> None:
    ingest_month(Path(dump), month, Path(warehouse), staging_dir=Path(staging))


@pytest.mark.slow
def test_two_months_ingested_by_two_processes_at_once(lichess_samples: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=_ingest_in_child,
            args=(str(lichess_samples / name), month, str(warehouse), str(tmp_path / "staging")),
        )
        for name, month in ((DUMP_2021, "2021-10"), (API_EXPORT, "2022-12"))
    ]
    with open_warehouse(warehouse):  # hold the lock while both parse, so both swaps must wait for it
        for child in children:
            child.start()
        time.sleep(3)
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0, 0]
    assert month_counts(warehouse, "2021-10") == (999, 0)
    assert month_counts(warehouse, "2022-12") == (791, 75)


@pytest.mark.slow
def test_workers_inside_a_daemonic_process_fall_back_to_one(lichess_samples: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # pool workers are daemonic: no children allowed
        pool.apply(
            ingest_month,
            (lichess_samples / API_EXPORT, "2022-12", warehouse),
            {"staging_dir": tmp_path / "staging", "workers": 2},
        )
    assert month_counts(warehouse, "2022-12") == (791, 75)
