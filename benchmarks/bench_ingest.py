"""Ingest speed and memory on a Lichess-like month, against python-chess and pgn-extract measured in the same run.

The corpus repeats the real 2021-10 dump head (999 games) with every Site id
rewritten to be unique, and is compressed as multi-frame zstd like Lichess's
`pzstd` files — at level 3, not Lichess's 19, only because 19 takes minutes to
build; decompression speed hardly depends on the level.

Every run ingests a month of its own into a warehouse that already holds the
earlier runs' months, as the monthly ingest does (rerunning a month, which also
deletes its old rows, made the swap about a fifth slower).

Two workers cannot halve a small month: the helper process needs its imports
(half a second) before it parses, and the swap into DuckDB, after all parsing,
only splits across threads by row groups of 122,880 rows. The benchmark measures
both, the speed-up they leave possible, the parse phase's own speed-up, and the
machine's: a pure-Python loop in 2 processes against 1, in the same run (on 2
cores shared with other work, that is often well below 2). A month of 1M games,
a hundredth of a recent Lichess month, shows what a real month gets.

    .venv/bin/python benchmarks/bench_ingest.py                  # 100k games, 3 runs of each
    .venv/bin/python benchmarks/bench_ingest.py --games 1000000  # a month's worth of scaling (~12 min)
    .venv/bin/python benchmarks/bench_ingest.py --quick          # 10k games, one run: a smoke run
    .venv/bin/python benchmarks/bench_ingest.py --against main   # also this code against another commit's
    .venv/bin/python benchmarks/bench_ingest.py --warehouse lake --games 50000 --repeat 2  # the lake vs the file

`--against REV` checks out REV's `transcend_pipeline` (`git archive`) and ingests
the corpus with it and with this tree in turn, each in a fresh interpreter, one
worker, so that a change to the parser is measured against the code it replaces
in the same run, on the same machine load. `--warehouse lake` does the same for
the Delta lake against the DuckDB file (`compare_warehouses`), with 1, 2 and 4
processes writing a month each at once.
"""

from __future__ import annotations

import argparse
import collections
import io
import itertools
import json
import multiprocessing
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import chess.pgn
import zstandard

from transcend_pipeline.ingest import IngestResult, ingest_month, read_pgn_chunks
from transcend_pipeline.pgn import PgnChunk, parse_chunk
from transcend_pipeline.warehouse import open_warehouse

SAMPLE = (
    Path(__file__).resolve().parents[1].parent / "shared/data/lichess-samples/lichess_2021-10_dump_excerpt_999games.pgn"
)
FRAME_BYTES = 16 << 20  # pzstd cuts its input into independent frames too
RECENT_MONTH_GAMES = 96_000_000
PYTHON_CHESS_GAMES = 2_000
SPIN_ITERATIONS = 10_000_000  # about half a second of a pure-Python loop
REPOSITORY = Path(__file__).resolve().parents[1]
WRITERS = (1, 2, 4)  # processes writing a month each at once, in --warehouse lake
SITE_ID = re.compile(r"(?<=\[Site \"https://lichess.org/)\w+")


def build_corpus(directory: Path, games: int) -> Path:
    """Write `games` games (the sample repeated, Site ids made unique) as a multi-frame `.pgn.zst`, streaming."""
    sample = ["[Event " + game for game in SAMPLE.read_text().split("[Event ")[1:]]
    compressor = zstandard.ZstdCompressor(level=3)
    path = directory / "lichess_db_standard_rated_2099-01.pgn.zst"
    with path.open("wb") as out:
        frame: list[str] = []
        frame_chars = 0
        for index in range(games):
            copy, game = divmod(index, len(sample))
            text = SITE_ID.sub(rf"\g<0>{copy:05d}", sample[game], count=1)
            frame.append(text)
            frame_chars += len(text)
            if frame_chars >= FRAME_BYTES or index == games - 1:
                out.write(compressor.compress("".join(frame).encode()))
                frame, frame_chars = [], 0
    return path


@dataclass(frozen=True)
class Measured:
    """One ingest run, measured in a fresh process so that its peak memory is its own."""

    label: str
    result: IngestResult
    cpu_seconds: float  # user + system, this process and its helpers
    peak_rss_mb: float  # the larger of the process and its largest helper
    finished_at: float  # time.time(), to line up runs that overlap


def measure_ingest(
    dump: Path, work: Path, workers: int, moves_max_elo: int | None, months: list[str], warehouse: str = "duckdb"
) -> list[Measured]:
    """Ingest the dump as each of `months` at once, each in its own process (like a Dagster backfill), into the
    DuckDB file or (`warehouse="lake"`) the Delta lake."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(months), mp_context=context) as pool:  # not daemonic, so helpers may start
        futures = [pool.submit(_ingest_here, dump, work, month, workers, moves_max_elo, warehouse) for month in months]
        return [future.result() for future in futures]


def _ingest_here(
    dump: Path, work: Path, month: str, workers: int, moves_max_elo: int | None, warehouse: str
) -> Measured:
    database = work / f"bench-{workers}-{moves_max_elo}.duckdb"
    lake = work / f"lake-{workers}-{moves_max_elo}" if warehouse == "lake" else None
    cpu_before = _cpu_seconds()
    result = ingest_month(
        dump, month, database, staging_dir=work / "staging", workers=workers, moves_max_elo=moves_max_elo, lake=lake
    )
    cpu = _cpu_seconds() - cpu_before
    finished_at = time.time()
    with open_warehouse(None if lake else database, read_only=lake is None, lake=lake) as connection:
        (rows,) = connection.execute("SELECT count(*) FROM games WHERE month = ?", [month]).fetchone()
    assert rows == result.games_accepted, (rows, result)
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    moves = "all moves" if moves_max_elo is None else f"moves <= {moves_max_elo}"
    return Measured(f"ingest_month, {moves}, workers={workers}, {warehouse}", result, cpu, peak / 1024, finished_at)


def compare_warehouses(dump: Path, work: Path, games: int, repeat: int, moves_max_elo: int | None) -> None:
    """Games per CPU-second into the lake against the DuckDB file, with 1, 2 and 4 writer processes (one worker
    each, a month each, all at once, as a backfill on one machine), runs interleaved; minimum CPU of each.

    The wall rate is every month's games over the window from the first start to the last finish; with more
    processes than cores it measures the machine, and the DuckDB file's writers also wait for its lock.
    """
    months = (f"{2300 + index // 12}-{index % 12 + 1:02d}" for index in itertools.count())
    runs: dict[tuple[str, int], list[list[Measured]]] = collections.defaultdict(list)
    for _ in range(repeat):
        for writers in WRITERS:
            for warehouse in ("duckdb", "lake"):
                batch = [next(months) for _ in range(writers)]
                runs[warehouse, writers].append(measure_ingest(dump, work, 1, moves_max_elo, batch, warehouse))
    moves = "all moves" if moves_max_elo is None else f"moves <= {moves_max_elo}"
    print(f"{'':<46} {'games/CPU-s':>12} {'games/s':>9}  (runs: games/CPU-s)")
    per_cpu: dict[tuple[str, int], float] = {}
    for (warehouse, writers), measured in runs.items():
        cpu = [sum(run.cpu_seconds for run in batch) for batch in measured]
        per_cpu[warehouse, writers] = writers * games / min(cpu)
        wall = writers * games / statistics.median(_window(batch) for batch in measured)
        each = ", ".join(f"{writers * games / seconds:,.0f}" for seconds in cpu)
        label = f"{warehouse}, {moves}, {writers} writer process{'es' if writers > 1 else ''}"
        print(f"{label:<46} {per_cpu[warehouse, writers]:>12,.0f} {wall:>9,.0f}  ({each})")
    ratios = ", ".join(f"{writers}: {per_cpu['lake', writers] / per_cpu['duckdb', writers]:.2f}" for writers in WRITERS)
    print(f"{'':<46} lake / DuckDB file, games per CPU-second, by writer processes: {ratios}")
    stored = sum(len(batch) for batches in runs.values() for batch in batches) // 2 * games  # games per warehouse
    database = (work / f"bench-1-{moves_max_elo}.duckdb").stat().st_size
    lake = sum(path.stat().st_size for path in (work / f"lake-1-{moves_max_elo}").rglob("*") if path.is_file())
    print(
        f"{'':<46} on disk, {moves}: DuckDB file {database / stored:,.0f} bytes a game, "
        f"lake {lake / stored:,.0f} ({stored:,} games in each)"
    )


INGEST_IN_TREE = """
import json, resource, sys, time
from pathlib import Path
from transcend_pipeline.ingest import ingest_month
dump, work, month, cap = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
cpu = lambda: sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
before = cpu()
result = ingest_month(dump, month, work / 'tree.duckdb', staging_dir=work / 'staging', moves_max_elo=int(cap) if cap else None)
print(json.dumps({'games': result.games_read, 'accepted': result.games_accepted, 'seconds': result.seconds, 'cpu': cpu() - before}))
"""


def ingest_in_tree(tree: Path, dump: Path, work: Path, month: str, moves_max_elo: int | None) -> dict:
    """One worker's ingest of the dump with the `transcend_pipeline` found in `tree`, in a fresh interpreter."""
    command = [sys.executable, "-c", INGEST_IN_TREE, str(dump), str(work), month, str(moves_max_elo or "")]
    finished = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(finished.stdout.splitlines()[-1])


def compare_trees(against: str, dump: Path, work: Path, games: int, repeat: int, moves_max_elo: int | None) -> None:
    """Games per CPU-second of this tree's ingest against commit `against`'s, runs interleaved; minimum CPU of each."""
    baseline_tree = work / f"against-{moves_max_elo}"
    baseline_tree.mkdir()
    archive = subprocess.run(
        ["git", "archive", against, "transcend_pipeline"], cwd=REPOSITORY, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(baseline_tree)], input=archive.stdout, check=True)
    months = (f"{2200 + index // 12}-{index % 12 + 1:02d}" for index in itertools.count())
    runs: dict[str, list[dict]] = {against: [], "this tree": []}
    for _ in range(repeat):
        for name, tree in ((against, baseline_tree), ("this tree", REPOSITORY)):
            runs[name].append(ingest_in_tree(tree, dump, work, next(months), moves_max_elo))
    rates = {name: games / min(run["cpu"] for run in measured) for name, measured in runs.items()}
    moves = "all moves" if moves_max_elo is None else f"moves <= {moves_max_elo}"
    for name, measured in runs.items():
        accepted = sorted({run["accepted"] for run in measured})
        each = ", ".join(f"{games / run['cpu']:,.0f}" for run in measured)
        label = f"{name}, {moves}, workers=1"
        print(f"{label:<46} {rates[name]:>12,.0f} games/CPU-s (runs: {each}), games accepted {accepted}")
    print(f"{'':<46} this tree / {against}: {rates['this tree'] / rates[against]:.3f}")


def _cpu_seconds() -> float:
    usages = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


def helper_start_seconds() -> float:
    """Seconds from starting a helper process, as `ingest_month` does, until it has parsed an empty chunk."""
    started = time.perf_counter()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(parse_chunk, PgnChunk(b"", ends_stream=True), "2099-01").result()
        return time.perf_counter() - started


def machine_scaling() -> float:
    """How much more work 2 processes of a pure-Python loop do than 1 in the same time, on this machine now."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_spin, [1, 1]))  # both processes started
        (one,) = [end - start for start, end in pool.map(_spin, [SPIN_ITERATIONS])]
        spans = list(pool.map(_spin, [SPIN_ITERATIONS] * 2, chunksize=1))
    return 2 * one / (max(end for _, end in spans) - min(start for start, _ in spans))


def _spin(iterations: int) -> tuple[float, float]:
    started = time.perf_counter()
    total = 0
    for index in range(iterations):
        total += index & 7
    return started, time.perf_counter()


def run_python_chess(dump: Path, games: int) -> tuple[float, float]:
    """(wall, CPU) seconds for python-chess `read_game` on the dump's first `games` games, decompression included."""
    with dump.open("rb") as raw:
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        text = io.TextIOWrapper(reader, encoding="utf-8")
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(games):
            chess.pgn.read_game(text)
        return time.perf_counter() - started, time.process_time() - cpu_started


def run_pgn_extract(dump: Path) -> tuple[float, float] | None:
    """(wall, CPU) seconds for `zstd -dc | pgn-extract` over the whole dump (it checks every move), or None.

    Debian installs it in /usr/games, which is not on every PATH.
    """
    binary = shutil.which("pgn-extract") or shutil.which("pgn-extract", path="/usr/games")
    if binary is None:
        return None
    cpu_before = _cpu_seconds()  # this process only waits: the CPU is the two children's
    started = time.perf_counter()
    with subprocess.Popen(["zstd", "-dc", str(dump)], stdout=subprocess.PIPE) as unzip:
        subprocess.run([binary, "-s", "-o", "/dev/null"], stdin=unzip.stdout, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started, _cpu_seconds() - cpu_before


HEADER = f"{'':<46} {'games/s':>9} {'MB/s':>6} {'games/CPU-s':>12} {'x python-chess':>15} {'peak RSS':>9}"


def row(name: str, games: int, seconds: float, cpu_seconds: float, pgn_bytes: float, baseline: float, rss: str) -> None:
    """One line: wall-clock rates, the rate per CPU-second (stable under load), and the ratio to the baseline's."""
    per_cpu = games / cpu_seconds
    print(
        f"{name:<46} {games / seconds:>9,.0f} {pgn_bytes / seconds / 1e6:>6.1f} {per_cpu:>12,.0f} "
        f"{per_cpu / baseline:>14.0f}x {rss:>9}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k games, one repeat (a smoke run)")
    parser.add_argument("--games", type=int, help="corpus size (overrides --quick)")
    parser.add_argument("--repeat", type=int, help="runs of each ingest, interleaved; medians are printed (default 3)")
    parser.add_argument("--moves-max-elo", type=int, default=1500, help="the cap for the bucket-only runs")
    parser.add_argument("--against", metavar="REV", help="also compare with the ingest of git revision REV")
    parser.add_argument("--against-only", action="store_true", help="with --against: only that comparison")
    parser.add_argument(
        "--warehouse",
        choices=("duckdb", "lake"),
        default="duckdb",
        help="lake: only the lake against the DuckDB file, 1, 2 and 4 writer processes (moves <= the cap)",
    )
    args = parser.parse_args()
    games = args.games or (10_000 if args.quick else 100_000)
    repeat = args.repeat or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        dump = build_corpus(work, games)
        pgn_bytes = float(sum(len(chunk) for chunk in read_pgn_chunks(dump, collections.Counter())))
        print(
            f"corpus: {games:,} games, {pgn_bytes / 1e6:.1f} MB of PGN, {dump.stat().st_size / 1e6:.1f} MB as "
            f"zstd level 3, built in {time.perf_counter() - started:.1f} s; {os.cpu_count()} cores, "
            f"load average {_load()} (wall-clock rates suffer from load, per-CPU-second ones less); "
            f"{repeat} interleaved runs: wall-clock figures are their medians, CPU ones their minimum (interference "
            f"only adds CPU time, to python-chess and to us alike)"
        )
        if args.warehouse == "lake":
            compare_warehouses(dump, work, games, repeat, args.moves_max_elo)
            print(f"load average at the end: {_load()}")
            return
        if args.against:
            for cap in (args.moves_max_elo, None):
                compare_trees(args.against, dump, work, games, repeat, cap)
            if args.against_only:
                return
        chess_games = min(PYTHON_CHESS_GAMES, games // 5)
        chess_runs = [run_python_chess(dump, chess_games) for _ in range(repeat)]
        chess_wall = statistics.median(wall for wall, _ in chess_runs)
        chess_cpu = min(cpu for _, cpu in chess_runs)
        baseline = chess_games / chess_cpu
        print(HEADER)
        row(
            "python-chess read_game (first games only)",
            chess_games,
            chess_wall,
            chess_cpu,
            chess_games / games * pgn_bytes,
            baseline,
            "",
        )
        extracted = run_pgn_extract(dump)  # one run: it takes a minute and a half per million games
        if extracted is None:
            print(f"{'pgn-extract':<46} not installed")
        else:
            row("zstd -dc | pgn-extract (all games)", games, *extracted, pgn_bytes, baseline, "")
        months = (f"{2100 + index // 12}-{index % 12 + 1:02d}" for index in itertools.count())
        helper_start = statistics.median(helper_start_seconds() for _ in range(repeat))
        for cap in (args.moves_max_elo, None):
            runs: dict[str, list] = collections.defaultdict(list)
            machine: list[float] = []
            for _ in range(repeat):
                for workers in (1, 2):
                    runs[f"workers={workers}"].append(measure_ingest(dump, work, workers, cap, [next(months)])[0])
                runs["pair"].append(measure_ingest(dump, work, 1, cap, [next(months), next(months)]))
                machine.append(machine_scaling())
            one, two = (_median_run(runs[f"workers={workers}"]) for workers in (1, 2))
            least_cpu = {workers: min(run.cpu_seconds for run in runs[f"workers={workers}"]) for workers in (1, 2)}
            for workers, run in ((1, one), (2, two)):
                row(
                    run.label,
                    games,
                    run.result.seconds,
                    least_cpu[workers],
                    pgn_bytes,
                    baseline,
                    f"{run.peak_rss_mb:.0f} MB",
                )
            windows = [_window(pair) for pair in runs["pair"]]
            window = statistics.median(windows)
            pair_cpu = min(sum(run.cpu_seconds for run in pair) for pair in runs["pair"])
            pair_rss = f"{max(run.peak_rss_mb for pair in runs['pair'] for run in pair):.0f} MB"
            row("  two months at once, workers=1 each", 2 * games, window, pair_cpu, 2 * pgn_bytes, baseline, pair_rss)
            speedups = [
                a.result.seconds / b.result.seconds for a, b in zip(runs["workers=1"], runs["workers=2"], strict=True)
            ]
            parse_speedup = statistics.median(
                (a.result.seconds - a.result.swap_seconds) / (b.result.seconds - b.result.swap_seconds)
                for a, b in zip(runs["workers=1"], runs["workers=2"], strict=True)
            )
            per_core = games / least_cpu[1]
            total, swap, swap_two = one.result.seconds, one.result.swap_seconds, two.result.swap_seconds
            print(
                f"{'':<46} the swap into DuckDB (after all parsing) took {swap:.2f} s of {total:.2f} s on one thread "
                f"and {swap_two:.2f} s on two (DuckDB splits it by row group, 122,880 rows), and a helper takes "
                f"{helper_start:.2f} s to start: perfect parallel parsing would give 2 workers "
                f"{total / ((total - swap + helper_start) / 2 + swap_two):.2f}x here"
            )
            print(
                f"{'':<46} 2 workers {total / two.result.seconds:.2f}x one (run by run: "
                f"{', '.join(f'{x:.2f}' for x in speedups)}), the parse phase alone {parse_speedup:.2f}x; "
                f"this machine, in the same runs: 2 processes of a pure-Python loop "
                f"{statistics.median(machine):.2f}x one (run by run: {', '.join(f'{x:.2f}' for x in machine)})"
            )
            print(
                f"{'':<46} two months at once {2 * games / window / (games / total):.2f}x one; 96M games: "
                f"{RECENT_MONTH_GAMES / per_core / 3600:.2f} h per core (CPU-time based), "
                f"{RECENT_MONTH_GAMES / (games / two.result.seconds) / 3600:.2f} h with 2 workers, "
                f"{RECENT_MONTH_GAMES / (2 * games / window) / 3600:.2f} h at the two-month wall rate"
            )
        print(f"load average at the end: {_load()}")


def _median_run(runs: list[Measured]) -> Measured:
    """The run with the median wall time (the upper median when there are two)."""
    return sorted(runs, key=lambda run: run.result.seconds)[len(runs) // 2]


def _window(pair: list[Measured]) -> float:
    """Wall seconds from the first start to the last finish of runs that overlap."""
    return max(run.finished_at for run in pair) - min(run.finished_at - run.result.seconds for run in pair)


def _load() -> str:
    return " ".join(f"{load:.1f}" for load in os.getloadavg())


if __name__ == "__main__":
    main()
