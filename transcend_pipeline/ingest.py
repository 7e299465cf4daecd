"""One monthly Lichess dump -> the DuckDB tables `games` and `games_quarantine`, staged so a failure changes nothing.

The dump is streamed (zstd frame by frame, never loaded whole), cut into chunks
of whole games, parsed by `transcend_pipeline.pgn` — in helper processes too when
asked for more than one worker — and written to Parquet in a private staging folder. Only
when every game has been read does one transaction replace the month's rows of
both tables, so the warehouse lock is held for seconds and a corrupt dump found
at 90% leaves the previous rows as they were. That swap also keeps a month's game
ids unique: a game whose id came earlier in the month goes to the quarantine as
`duplicate_game_id` (Lichess never repeats one; files from elsewhere may). With a
lake (`transcend_pipeline.lake`), the same rows replace the month's in its Delta
tables instead, one commit per table, and the DuckDB file is never opened.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
import multiprocessing
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard

from transcend_pipeline.lake import replace_month
from transcend_pipeline.pgn import (
    EXCERPT_CHARS,
    PARSED_GAMES_SCHEMA,
    QUARANTINE_SCHEMA,
    PgnChunk,
    PgnFormatError,
    game_aligned_chunks,
    parse_chunk,
    parse_chunk_file,
)
from transcend_pipeline.vocab import MOVES
from transcend_pipeline.warehouse import open_warehouse

READ_BYTES = 1 << 20  # compressed bytes per read; ~7 MB of PGN
PROGRESS_EVERY = 100_000
SWAP_MEMORY_LIMIT = "512MB"
DUCKDB_ROW_GROUP = 122_880  # rows
STAGING_CODEC = "lz4"  # read once, soon: cheaper to write and read than zstd, for 30% more disk
STAGING_ROW_GROUP = 10_000  # games per Parquet row group: ~3 chunks; 35% less to write than a group per 1,700 games
STAGING_FILE_ROWS = 500_000  # games per staged Parquet file (see _StagingWriter)
HELPER_QUEUE = 3  # chunks handed to each helper ahead: with 2 it sometimes ran dry while this process parsed one
MAX_WAITING = 16  # parsed chunks (~3,400 games each) that may wait, in order, behind one a helper still parses

MOVE_TYPE_DDL = f"CREATE TYPE IF NOT EXISTS uci_move AS ENUM ({', '.join(repr(uci) for uci in MOVES)})"
GAMES_DDL = """
CREATE TABLE IF NOT EXISTS games (
    month VARCHAR, game_id VARCHAR, site VARCHAR, event VARCHAR, rated BOOLEAN, variant VARCHAR, speed VARCHAR,
    base_seconds INTEGER, increment_seconds INTEGER, white VARCHAR, black VARCHAR,
    white_elo SMALLINT, black_elo SMALLINT, white_rating_diff SMALLINT, black_rating_diff SMALLINT,
    white_title VARCHAR, black_title VARCHAR, result VARCHAR, termination VARCHAR, utc_time TIMESTAMP,
    eco VARCHAR, opening VARCHAR, moves uci_move[], ply_count SMALLINT, has_clock BOOLEAN, has_eval BOOLEAN
)"""
QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS games_quarantine (
    month VARCHAR, position INTEGER, site VARCHAR, excerpt VARCHAR, reason VARCHAR, detail VARCHAR
)"""
# The month's later games of a repeated id (parameters: the staged games' glob, the month), quarantined by the swap.
DUPLICATES_SQL = f"""
CREATE TEMP TABLE duplicates AS
WITH repeated AS (
    SELECT game_id FROM read_parquet($games) GROUP BY game_id HAVING count(*) > 1
)
SELECT $month AS month, position, site,
    left(format('[Site "{{}}"] [White "{{}}"] [Black "{{}}"] [Result "{{}}"] ({{}} moves)',
        site, white, black, result, coalesce(ply_count::VARCHAR, '?')), {EXCERPT_CHARS}) AS excerpt,
    'duplicate_game_id' AS reason,
    format('game id {{}} came first at position {{}}', game_id, first) AS detail
FROM (
    SELECT *, min(position) OVER (PARTITION BY game_id) AS first
    FROM read_parquet($games) SEMI JOIN repeated USING (game_id)
)
WHERE position > first
"""
# The staged games (parameter: their glob) but the duplicates: the rows of `games`.
FIRST_OF_EACH_ID_SQL = "SELECT * EXCLUDE (position) FROM read_parquet(?) ANTI JOIN duplicates USING (position)"


class DumpReadError(RuntimeError):
    """The dump cannot be read to its end (corrupt or truncated zstd, unreadable file); the message names the file."""


@dataclass(frozen=True)
class IngestResult:
    """What one month's ingest read and wrote; games_read == games_accepted + games_quarantined."""

    month: str
    games_read: int
    games_accepted: int
    games_quarantined: int
    compressed_bytes: int
    pgn_bytes: int
    seconds: float
    swap_seconds: float  # the part of `seconds` spent replacing the rows (one thread; a wait for the lock included)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def games_per_second(self) -> float:
        return self.games_read / self.seconds if self.seconds > 0 else 0.0


def read_pgn_chunks(dump_path: Path, counter: collections.Counter) -> Iterator[bytes]:
    """Yield the dump's PGN bytes chunk by chunk; `.zst` is decompressed frame by frame, anything else read as is.

    python-zstandard's stream reader ends quietly at a truncated frame, so frames
    are walked here and a frame still open at end of file is reported.
    `counter` receives 'compressed' and 'pgn' byte totals as it goes.
    """
    try:
        with dump_path.open("rb") as raw:
            if dump_path.suffix != ".zst":
                while chunk := raw.read(READ_BYTES * 4):
                    counter["compressed"] += len(chunk)
                    counter["pgn"] += len(chunk)
                    yield chunk
                return
            decompressor = zstandard.ZstdDecompressor()
            frame = decompressor.decompressobj()
            frame_open = False
            while compressed := raw.read(READ_BYTES):
                counter["compressed"] += len(compressed)
                while compressed:
                    chunk = frame.decompress(compressed)
                    frame_open = True
                    if chunk:
                        counter["pgn"] += len(chunk)
                        yield chunk
                    if not frame.eof:
                        break
                    compressed = frame.unused_data
                    frame = decompressor.decompressobj()
                    frame_open = False
            if counter["compressed"] == 0:
                raise DumpReadError(f"{dump_path}: empty file, not a zstd stream")
            if frame_open:
                raise DumpReadError(f"{dump_path}: truncated zstd stream (the last frame is incomplete)")
    except zstandard.ZstdError as error:
        raise DumpReadError(f"{dump_path}: corrupt zstd data after {counter['compressed']} bytes: {error}") from error
    except OSError as error:
        raise DumpReadError(f"{dump_path}: cannot read: {error}") from error


def ingest_month(
    dump_path: Path,
    month: str,
    warehouse_path: Path,
    *,
    staging_dir: Path,
    workers: int = 1,
    progress: Callable[[int, float], None] | None = None,
    moves_max_elo: int | None = None,
    lake: Path | str | None = None,
) -> IngestResult:
    """Parse one month's dump (`.pgn.zst`, or plain `.pgn`) and atomically replace its rows in the warehouse.

    `workers` > 1 parses in that many processes: this one, which also
    decompresses, splits and writes, and `workers - 1` helpers.
    `progress(games_read, seconds)` is called about every 100k games and once
    at the end. `moves_max_elo` stores (and
    legality-checks) moves only for games whose both Elos are at most that value,
    the games that can enter a rating bucket; None keeps every game's moves.
    With `lake`, the rows go to the Delta tables there (`transcend_pipeline.lake`)
    and `warehouse_path` is not opened.
    """
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}", month):
        raise ValueError(f"month must be 'YYYY-MM', got {month!r}")
    started = time.perf_counter()
    dump_path = Path(dump_path)
    staging_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f"games-{month}-", dir=staging_dir))
    byte_counts: collections.Counter = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    games_read = accepted = 0
    next_report = PROGRESS_EVERY
    try:
        with contextlib.ExitStack() as after_swap:  # waits, once the rows are swapped in, for helpers still exiting
            with (
                _StagingWriter(stage, "games", PARSED_GAMES_SCHEMA) as games_out,
                _StagingWriter(stage, "quarantine", QUARANTINE_SCHEMA) as quarantine_out,
            ):
                chunks = game_aligned_chunks(read_pgn_chunks(dump_path, byte_counts))
                # Iterated inline, not held in a variable, so that an error here closes it (its helpers stop) at once.
                for games, quarantined in _parsed_chunks(chunks, month, workers, moves_max_elo, after_swap, stage):
                    games_out.write(_shifted(games, games_read))
                    quarantine_out.write(_shifted(quarantined, games_read))
                    accepted += games.num_rows
                    reasons.update(quarantined.column("reason").to_pylist())
                    games_read += games.num_rows + quarantined.num_rows
                    if progress is not None and games_read >= next_report:
                        progress(games_read, time.perf_counter() - started)
                        next_report += PROGRESS_EVERY
            pa.default_memory_pool().release_unused()  # give back what parsing freed before DuckDB takes its share
            swap_started = time.perf_counter()
            # DuckDB splits a copy by row groups: more threads than the month has row groups only contend.
            threads = max(1, min(workers, math.ceil(accepted / DUCKDB_ROW_GROUP)))
            duplicates = _swap_month(warehouse_path, month, games_out.pattern, quarantine_out.pattern, threads, lake)
            accepted -= duplicates
            if duplicates:
                reasons["duplicate_game_id"] += duplicates
            swap_seconds = time.perf_counter() - swap_started
    except PgnFormatError as error:
        raise DumpReadError(f"{dump_path}: {error}") from error
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    seconds = time.perf_counter() - started
    if progress is not None:
        progress(games_read, seconds)
    return IngestResult(
        month=month,
        games_read=games_read,
        games_accepted=accepted,
        games_quarantined=games_read - accepted,
        compressed_bytes=byte_counts["compressed"],
        pgn_bytes=byte_counts["pgn"],
        seconds=seconds,
        swap_seconds=swap_seconds,
        quarantine_reasons=dict(reasons),
    )


def _shifted(table: pa.Table, games_before: int) -> pa.Table:
    """A chunk's rows with their positions counted from the month's first game, not the chunk's."""
    index = table.schema.get_field_index("position")
    return table.set_column(index, "position", pc.add(table.column(index), pa.scalar(games_before, pa.int32())))


class _StagingWriter:
    """Parquet files `<stem>-NNNNN.parquet` in row groups of about `STAGING_ROW_GROUP` rows, however small the
    tables it is given, and a new file every `STAGING_FILE_ROWS` rows.

    A writer keeps what it knows of its row groups until it closes: one file per
    month grew the process by 13 MB per million games (274 -> 313 MB over 4M
    games), which a 96M-game month would turn into gigabytes; rolling kept it flat.
    """

    def __init__(self, directory: Path, stem: str, schema: pa.Schema) -> None:
        self.pattern = str(directory / f"{stem}-*.parquet")  # every file it writes, for `read_parquet`
        self._directory, self._stem, self._schema = directory, stem, schema
        self._files = 0
        self._writer = self._open()
        self._pending: list[pa.Table] = []
        self._rows = self._file_rows = 0

    def _open(self) -> pq.ParquetWriter:
        path = self._directory / f"{self._stem}-{self._files:05d}.parquet"
        self._files += 1
        return pq.ParquetWriter(path, self._schema, compression=STAGING_CODEC, write_statistics=False)

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._rows += table.num_rows
        if self._rows >= STAGING_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            if self._file_rows >= STAGING_FILE_ROWS:
                self._writer.close()
                self._writer, self._file_rows = self._open(), 0
            self._writer.write_table(pa.concat_tables(self._pending))
            self._file_rows += self._rows
        self._pending, self._rows = [], 0

    def __enter__(self) -> _StagingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self._flush()
        self._writer.close()


def _parsed_chunks(
    chunks: Iterator[PgnChunk],
    month: str,
    workers: int,
    moves_max_elo: int | None,
    after_swap: contextlib.ExitStack,
    stage: Path,
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Parse chunks here and in `workers - 1` helper processes; yield the results in the chunks' order.

    This process decompresses, splits and writes; it parses every chunk itself
    until the helpers have started (their imports take half a second, as long
    as a small month), and later whenever they have `HELPER_QUEUE` chunks each
    queued. A chunk reaches a helper as a file in `stage` (the page cache, in
    practice), not through the pool's pipe: the pipe is fed by a thread of this
    process, which waits for the GIL while this process parses, and the helper
    sat idle a third of the time waiting for its next 8 MB. Results wait in order
    behind the oldest helper chunk, at most `MAX_WAITING`. Once every chunk is
    parsed, the helpers exit (a tenth of a second or more: an interpreter with
    Arrow loaded shutting down) while the caller swaps the rows in; `after_swap`
    waits for them.
    """
    chunks = iter(chunks)
    head = list(itertools.islice(chunks, 2))
    # A month of one chunk is parsed here: helpers would only start in time to be waited for. A daemonic process
    # may not start helpers at all.
    if workers <= 1 or len(head) < 2 or multiprocessing.current_process().daemon:
        for chunk in itertools.chain(head, chunks):
            yield parse_chunk(chunk, month, moves_max_elo)
        return
    # spawn, not fork: this may run inside a threaded Dagster process.
    pool = ProcessPoolExecutor(workers - 1, mp_context=multiprocessing.get_context("spawn"))
    started = [pool.submit(parse_chunk, PgnChunk(b"", ends_stream=True), month) for _ in range(workers - 1)]
    parsed_all = False
    try:
        waiting: collections.deque[Future] = collections.deque()
        for number, chunk in enumerate(itertools.chain(head, chunks)):
            while waiting and (waiting[0].done() or len(waiting) >= MAX_WAITING):
                yield waiting.popleft().result()
            queued = sum(not future.done() for future in waiting)
            if all(future.done() for future in started) and queued < HELPER_QUEUE * (workers - 1):
                handed = stage / f"chunk-{number}.pgn"
                handed.write_bytes(chunk.text)
                waiting.append(pool.submit(parse_chunk_file, handed, chunk.ends_stream, month, moves_max_elo))
            else:
                parsed: Future = Future()
                parsed.set_result(parse_chunk(chunk, month, moves_max_elo))
                waiting.append(parsed)
        while waiting:
            yield waiting.popleft().result()
        parsed_all = True
    finally:
        # Always wait for the helpers. Not waiting for one still starting (and leaving the pool to interpreter
        # exit) is the likely cause of a `dagster asset materialize` step that hung once in CI (Python 3.11).
        if parsed_all:
            stopping = threading.Thread(target=pool.shutdown, name="ingest-helpers-exit")
            stopping.start()
            after_swap.callback(stopping.join)
        else:
            pool.shutdown(wait=True, cancel_futures=True)


def _swap_month(
    warehouse_path: Path, month: str, games: str, quarantine: str, threads: int, lake: Path | str | None = None
) -> int:
    """Replace the month's rows of both tables from their staged Parquet files (globs), in one transaction; return
    how many games were quarantined there as `duplicate_game_id`.

    The copy runs on the ingest's `threads`, which then have nothing else to do.
    Two threads copy 1M games about twice as fast as one (4.0-4.5 s -> 1.9-2.3 s),
    but only if the rows may land out of their file order (`month` and `game_id`
    identify them; a quarantined game keeps its position); in order, 1.2x. On
    100k games (one row group) two threads took 0.70 s against 0.49 s for one.
    A game id seen twice keeps its first game (by position); the later ones are
    quarantined with their tags as the excerpt. With `lake`, the rows go to its
    Delta tables instead (`_swap_month_into_lake`).
    """
    if lake is not None:
        return _swap_month_into_lake(lake, month, games, quarantine, threads)
    with open_warehouse(warehouse_path) as connection:
        _configure_swap(connection, threads)
        connection.execute("BEGIN TRANSACTION")
        try:
            for ddl in (MOVE_TYPE_DDL, GAMES_DDL, QUARANTINE_DDL):
                connection.execute(ddl)
            connection.execute(DUPLICATES_SQL, {"games": games, "month": month})
            connection.execute("DELETE FROM games WHERE month = ?", [month])
            connection.execute(f"INSERT INTO games BY NAME {FIRST_OF_EACH_ID_SQL}", [games])
            connection.execute("DELETE FROM games_quarantine WHERE month = ?", [month])
            connection.execute("INSERT INTO games_quarantine BY NAME SELECT * FROM read_parquet(?)", [quarantine])
            connection.execute("INSERT INTO games_quarantine BY NAME SELECT * FROM duplicates")
            (duplicates,) = connection.execute("SELECT count(*) FROM duplicates").fetchone()
            connection.execute("DROP TABLE duplicates")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return duplicates


def _swap_month_into_lake(lake: Path | str, month: str, games: str, quarantine: str, threads: int) -> int:
    """`_swap_month` for the lake: the same duplicate rule, run by an in-memory DuckDB over the staged files, whose
    rows stream into one commit per table (`lake.replace_month`); the DuckDB file is not opened.

    A Delta commit spans one table, so `games` is committed before `games_quarantine`: a failure between the two
    leaves the month's new games beside its old quarantine (read = accepted + quarantined fails for that month)
    until the rerun that a failed ingest gets anyway. Each table on its own is always one writer's whole month.
    """
    with duckdb.connect() as connection:
        _configure_swap(connection, threads)
        connection.execute(DUPLICATES_SQL, {"games": games, "month": month})
        replace_month(lake, "games", month, connection.execute(FIRST_OF_EACH_ID_SQL, [games]).to_arrow_reader())
        quarantined = connection.execute(
            "SELECT * FROM read_parquet(?) UNION ALL BY NAME SELECT * FROM duplicates", [quarantine]
        )
        replace_month(lake, "games_quarantine", month, quarantined.to_arrow_reader())
        (duplicates,) = connection.execute("SELECT count(*) FROM duplicates").fetchone()
    return duplicates


def _configure_swap(connection: duckdb.DuckDBPyConnection, threads: int) -> None:
    """The swap's settings: its threads, rows in any order (so threads can split the copy), and bounded memory."""
    connection.execute("SET enable_progress_bar = false")
    connection.execute(f"SET threads = {int(threads)}")
    connection.execute("SET preserve_insertion_order = false")
    connection.execute(f"SET memory_limit = '{SWAP_MEMORY_LIMIT}'")  # spill rather than grow with the month
