"""The whole-table rebuild at scale: the bucket models and their quality gates over N rows of `stg_games`, on the
DuckDB file and on the lake, beside a plain full scan of the same rows measured in the same run.

The monthly stages scale out (a month per process, or per machine on the lake); the bucket tables do not: they
are rebuilt from every month of `stg_games` by one DuckDB process, after every month that changes, and their GX
gates scan them again. This measures that step as the pipeline runs it: each step is a fresh interpreter (Dagster
runs each asset and check in its own process) that opens the warehouse with `open_warehouse` and calls the very
functions the assets call (`sql_models.materialize`, `quality.run_suite`), with the `lichess` target's vars.

`stg_games` is built by replicating a real one, not by ingesting N games: the 2021-10 excerpt (999 games) is
ingested as the `games` asset does by default (moves for games of both Elos <= 1500, the largest cap), its
`stg_games` month is materialised (302 rows: games above the cap have no moves and no ply count, so none reach
it), and those rows are copied with new game ids, into months of `--month-rows` rows each (Delta partitions on
the lake, insertion order in the file). Player names get a suffix per `--copies-per-player` copies, so the number of
distinct players grows with N (about 2 * N / 302 * 603 / 2 / that, ~N/15 by default) instead of staying at the
sample's 603: `bucket_players` groups by player, and a fixed 603 would make it look free. Moves repeat the
sample's 302 games, so the opening metric sees few distinct positions; its cost is a sample of at most
var('opening_sample_games') games a cap, bounded whatever N.

    .venv/bin/python benchmarks/bench_buckets.py --rows 1000000                # ~5 min
    .venv/bin/python benchmarks/bench_buckets.py --rows 1000000 4000000 16000000 --work /big/scratch

Figures per step: wall and CPU seconds (user + system, every DuckDB thread), the step process's peak RSS, the
most bytes DuckDB had spilled to its temp folder at once (polled every 0.1 s), and stg_games rows per CPU-second.
The fit is CPU and RSS against N between the smallest and largest size (log-log slope: 1 is linear). On the lake,
two more steps read stg_games through the Delta table's Arrow dataset (`@arrow`) instead of the view over its
Parquet files that `lake.attach` creates: the same rows, another reader.

What it showed (DuckDB 1.5.6, 2 shared cores, memory_limit 8GB, 1M / 4M / 16M rows in one run; 64M in another):
on the file every step is linear in CPU (bucket_games ~480k rows a CPU-second, the whole rebuild and its gates
~210k), bucket_diversity flat up to 16M and linear after (its join reads every game id); the gates' count(DISTINCT
game_id) is what grows: gate:bucket_games held 5 GB at 16M, and at 64M under a 6GB limit spilled 5.8 GB and took
5.8x the CPU of 16M (slope 1.27). On the lake, when `lake.attach` still registered Arrow datasets, the Arrow
dataset was the bottleneck: a scan cost 5x the CPU of DuckDB's Parquet reader over the same files and 3 GB of RSS
against 0.2, and bucket_diversity passed 9 GiB at 16M (7.8 GB at 4M; DuckDB's memory_limit does not bound Arrow's
memory), where the Parquet reader needed 2.3 GB; so `lake.attach` now reads a folder lake's files with DuckDB's
Parquet reader.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

SAMPLE = (
    Path(__file__).resolve().parents[1].parent / "shared/data/lichess-samples/lichess_2021-10_dump_excerpt_999games.pgn"
)
SEED_MONTH = "2021-10"
STEPS = (
    "scan",  # the baseline: one pass over the columns the buckets read
    "bucket_games",
    "bucket_players",
    "bucket_diversity",
    "gate:stg_games",
    "gate:bucket_games",
    "gate:bucket_diversity",
)
# Lake only, after the rest: the same scan and model with stg_games read through the table's Arrow dataset
# (`DeltaTable.to_pyarrow_dataset()`, what `lake.attach` registered until it read the files with DuckDB's own
# Parquet reader).
LAKE_STEPS = ("scan@arrow", "bucket_diversity@arrow")
SCAN_SQL = "SELECT count(*), sum(len(moves)), sum(length(white) + length(black)), max(max_elo) FROM stg_games"
BUILD_MEMORY = "3GB"  # building stg_games sorts it by month: spill rather than grow
ALL_LICHESS_GAMES = 7.0e9  # standard rated games, ~166 months


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """A binomial proportion's 95% Wilson interval."""
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


def seed(work: Path) -> dict:
    """Ingest the excerpt into a DuckDB file and a lake, materialise its stg_games month in each; report the shares."""
    from transcend_pipeline.ingest import ingest_month
    from transcend_pipeline.sql_models import PROJECT_ROOT, discover_models, load_vars, materialize
    from transcend_pipeline.warehouse import open_warehouse

    models, variables = discover_models(PROJECT_ROOT), load_vars(PROJECT_ROOT, target="lichess")
    caps = [int(cap) for cap in variables["caps"]]
    shares = {}
    for label, cap in (("moves <= 1500 (default)", max(caps)), ("all moves", None)):
        for lake in (None, work / f"seed-lake-{cap}"):
            database = work / f"seed-{cap}.duckdb"
            ingest_month(SAMPLE, SEED_MONTH, database, staging_dir=work / "staging", moves_max_elo=cap, lake=lake)
            with open_warehouse(None if lake else database, lake=lake) as connection:
                materialize(connection, models["stg_games"], variables, month=SEED_MONTH, lake=lake)
                (games,) = connection.execute("SELECT count(*) FROM games").fetchone()
                counts = connection.execute(
                    "SELECT count(*), "
                    + ", ".join(f"count(*) FILTER (WHERE max_elo <= {c})" for c in caps)
                    + " FROM stg_games"
                ).fetchone()
        shares[label] = (games, counts)
    return {"caps": caps, "shares": shares}


def build(
    work: Path, rows: int, month_rows: int, copies_per_player: int, with_lake: bool = True
) -> tuple[Path, Path, float]:
    """stg_games of `rows` rows in a DuckDB file and (`with_lake`) in a lake, copied from the seeds; (file, lake,
    seconds)."""
    import duckdb

    from transcend_pipeline.lake import replace_month
    from transcend_pipeline.warehouse import open_warehouse

    started = time.perf_counter()
    folder = work / f"rows-{rows}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    database, lake = folder / "warehouse.duckdb", folder / "lake"
    seed_rows = (
        duckdb.connect(str(work / "seed-1500.duckdb"), read_only=True)
        .execute("SELECT count(*) FROM stg_games")
        .fetchone()[0]
    )
    copies = math.ceil(rows / seed_rows)
    copies_per_month = max(1, month_rows // seed_rows)
    # month index -> 'YYYY-MM' from 2013-01, as Lichess's months run
    index = f"(copy // {copies_per_month})"
    month_sql = f"printf('%04d-%02d', 2013 + {index} // 12, {index} % 12 + 1)"

    def copied(relation: str, where: str) -> str:
        return f"""
            SELECT * REPLACE (
                {month_sql} AS month,
                game_id || '-' || copy AS game_id,
                white || '~' || (copy // {copies_per_player}) AS white,
                black || '~' || (copy // {copies_per_player}) AS black
            )
            FROM (SELECT *, row_number() OVER (ORDER BY game_id) - 1 AS seq FROM {relation}) AS s,
                range({copies}) AS r(copy)
            WHERE copy * {seed_rows} + seq < {rows} {where}
            ORDER BY copy
        """

    shutil.copy(work / "seed-1500.duckdb", database)  # its games too, and the uci_move type of the moves
    with duckdb.connect(str(database), config={"memory_limit": BUILD_MEMORY}) as connection:
        connection.execute("ALTER TABLE stg_games RENAME TO seed_stg")
        columns = connection.execute("SELECT * FROM seed_stg LIMIT 0").description
        select = copied("seed_stg", "")
        connection.execute(
            f"CREATE TABLE stg_games AS SELECT {', '.join(name for name, *_ in columns)} FROM ({select})"
        )
        connection.execute("DROP TABLE seed_stg")
        connection.execute("CHECKPOINT")
    with open_warehouse(None, lake=work / "seed-lake-1500") as connection:
        if not with_lake:
            return database, lake, time.perf_counter() - started
        connection.execute(f"SET memory_limit = '{BUILD_MEMORY}'")
        connection.execute("CREATE TABLE seed_stg AS SELECT * FROM stg_games")
        months = math.ceil(copies / copies_per_month)
        for index in range(months):
            first, last = index * copies_per_month, (index + 1) * copies_per_month
            month = f"{2013 + index // 12:04d}-{index % 12 + 1:02d}"
            select = copied("seed_stg", f"AND copy >= {first} AND copy < {last}")
            reader = connection.execute(f"SELECT * EXCLUDE (seq, copy) FROM ({select})").to_arrow_reader()
            replace_month(lake, "stg_games", month, reader)
    return database, lake, time.perf_counter() - started


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # a spill file removed between listing and stat
                total += os.path.getsize(os.path.join(root, name))
    return total


def run_step(step: str, database: Path, lake: Path | None, memory_limit: str | None) -> dict:
    """One step as its asset or check runs it, in this (fresh) process: wall, CPU, peak RSS, most bytes spilled."""
    from transcend_pipeline.quality import load_expectations, run_suite
    from transcend_pipeline.sql_models import PROJECT_ROOT, discover_models, load_vars, materialize
    from transcend_pipeline.warehouse import open_warehouse

    models, variables = discover_models(PROJECT_ROOT), load_vars(PROJECT_ROOT, target="lichess")
    expectations = load_expectations(PROJECT_ROOT)
    step, _, reader = step.partition("@")  # "@arrow": the lake's stg_games through its Arrow dataset
    model = step.removeprefix("gate:")
    if step.startswith("gate:"):
        import great_expectations  # noqa: F401  its import (seconds) is the same at any size: not timed

    # The asset's connection: stg_games's own gate on the lake runs on an in-memory database (defs/warehouse.py).
    path = None if (lake is not None and model == "stg_games") else database
    temp = Path(f"{path}.tmp") if path else Path(".tmp")
    spilled, done = [0], threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            spilled[0] = max(spilled[0], _folder_bytes(temp))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    wall, cpu = time.perf_counter(), time.process_time()
    outcome = ""
    read_only = step.startswith("gate:") and path is not None
    with open_warehouse(path, read_only=read_only, lake=None if reader else lake) as connection:
        if memory_limit:
            connection.execute(f"SET memory_limit = '{memory_limit}'")
        if reader:
            from deltalake import DeltaTable

            connection.register("stg_games", DeltaTable(lake / "stg_games").to_pyarrow_dataset())
        if step == "scan":
            rows = connection.execute(SCAN_SQL).fetchone()[0]
        elif step.startswith("gate:"):
            suite = run_suite(connection, model, expectations[model], variables)
            rows = len(suite.outcomes)
            outcome = (
                "pass"
                if suite.success
                else "fail: " + ", ".join(sorted({f"{o.name}" for o in suite.outcomes if not o.success}))
            )
        else:
            rows = materialize(connection, models[model], variables)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done.set()
    watcher.join()
    peak = _peak_rss()
    return {"wall": wall, "cpu": cpu, "rss": peak, "spill": spilled[0], "rows": rows, "outcome": outcome}


def _peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM, not ru_maxrss, which a child inherits from its parent at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(step: str, database: Path, lake: Path | None, memory_limit: str | None, rss_cap: int) -> dict:
    """Run one step in a fresh interpreter; kill it if its RSS passes `rss_cap` bytes (DuckDB's memory_limit does not
    bound the Arrow side of a lake scan), and say so."""
    command = [sys.executable, __file__, "--step", step, "--database", str(database)]
    command += ["--lake", str(lake)] if lake else []
    command += ["--memory-limit", memory_limit] if memory_limit else []
    started = time.perf_counter()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=database.parent
    ) as process:
        status, killed_at = Path(f"/proc/{process.pid}/status"), 0
        while process.poll() is None:
            try:
                rss = next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines() if "VmRSS" in line)
            except (OSError, StopIteration):
                rss = 0
            if rss > rss_cap:
                killed_at = rss
                process.kill()
                break
            time.sleep(0.05)
        stdout, stderr = process.communicate()
    if killed_at:
        return {"error": f"killed at {killed_at / 2**30:.1f} GiB RSS after {time.perf_counter() - started:.0f} s"}
    if process.returncode != 0:
        return {"error": (stderr.strip().splitlines() or ["?"])[-1][:160]}
    return json.loads(stdout.splitlines()[-1])


def slope(points: list[tuple[float, float]]) -> float | None:
    """The log-log slope between the smallest and the largest size: 1 when it grows linearly."""
    (x0, y0), (x1, y1) = points[0], points[-1]
    if x1 == x0 or y0 <= 0 or y1 <= 0:
        return None
    return math.log(y1 / y0) / math.log(x1 / x0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000], help="sizes of stg_games (rows)")
    parser.add_argument("--month-rows", type=int, default=1_000_000, help="stg_games rows a month (a partition)")
    parser.add_argument("--copies-per-player", type=int, default=10, help="copies of the seed sharing player names")
    parser.add_argument("--warehouse", choices=("duckdb", "lake", "both"), default="both")
    parser.add_argument(
        "--memory-limit",
        nargs="+",
        default=["default"],
        help="DuckDB memory_limit of every step, e.g. 8GB; several: each in turn ('default': DuckDB's, 80%% of RAM)",
    )
    parser.add_argument("--rss-cap", type=int, default=9, help="GiB: a step whose RSS passes it is killed")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one); removed at the end")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--lake", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        (limit,) = args.memory_limit
        print(json.dumps(run_step(args.step, args.database, args.lake, None if limit == "default" else limit)))
        return

    import duckdb

    work = args.work or Path(__import__("tempfile").mkdtemp(prefix="bench-buckets-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(
            f"DuckDB {duckdb.__version__}, {os.cpu_count()} cores, load average {_load()}, memory_limit "
            f"{' then '.join(args.memory_limit)} ('default': DuckDB's, 80% of RAM); a shared machine: compare figures "
            f"within this run"
        )
        seeded = seed(work)
        caps = seeded["caps"]
        for label, (games, counts) in seeded["shares"].items():
            reach = ", ".join(
                f"<= {cap}: {count} ({100 * count / games:.1f}%, 95% CI {100 * wilson(count, games)[0]:.1f}-"
                f"{100 * wilson(count, games)[1]:.1f}%)"
                for cap, count in zip(caps, counts[1:], strict=True)
            )
            print(f"seed, ingest with {label}: {games} games, {counts[0]} reach stg_games; by max_elo {reach}")
        games, counts = seeded["shares"]["moves <= 1500 (default)"]
        stg_share = counts[0] / games
        bucket_rows_per_stg = sum(counts[1:]) / counts[0]
        warehouses = ("duckdb", "lake") if args.warehouse == "both" else (args.warehouse,)
        results: dict[tuple[str, str], list[tuple[int, dict]]] = {}
        header = f"{'rows':>11} {'warehouse':<12} {'step':<30} {'wall s':>8} {'CPU s':>8} {'rows/CPU-s':>11} "
        header += f"{'x scan':>7} {'peak RSS':>9} {'spilled':>8}  outcome"
        for rows in args.rows:
            database, lake, seconds = build(
                work, rows, args.month_rows, args.copies_per_player, with_lake="lake" in warehouses
            )
            (players,) = (
                duckdb.connect(str(database), read_only=True)
                .execute(
                    "SELECT count(DISTINCT player) FROM (SELECT white AS player FROM stg_games UNION ALL "
                    "SELECT black FROM stg_games)"
                )
                .fetchone()
            )
            print(
                f"\nstg_games of {rows:,} rows ({players:,} distinct players) built in {seconds:.0f} s: file "
                f"{database.stat().st_size / 1e6:,.0f} MB, lake {_folder_bytes(lake) / 1e6:,.0f} MB; "
                f"load average {_load()}"
            )
            print(header)
            for warehouse, limit in itertools.product(warehouses, args.memory_limit):
                # On the lake the bucket tables are written to a DuckDB file without stg_games, as the assets do.
                target = database if warehouse == "duckdb" else database.with_name("buckets.duckdb")
                label = warehouse if len(args.memory_limit) == 1 else f"{warehouse} {limit}"
                scan_cpu = None
                for step in STEPS + (LAKE_STEPS if warehouse == "lake" else ()):
                    measured = measure(
                        step,
                        target,
                        lake if warehouse == "lake" else None,
                        None if limit == "default" else limit,
                        args.rss_cap << 30,
                    )
                    results.setdefault((label, step), []).append((rows, measured))
                    if "error" in measured:
                        print(f"{rows:>11,} {label:<12} {step:<30} ERROR {measured['error']}")
                        continue
                    scan_cpu = measured["cpu"] if step == "scan" else scan_cpu
                    print(
                        f"{rows:>11,} {label:<12} {step:<30} {measured['wall']:>8.2f} {measured['cpu']:>8.2f} "
                        f"{rows / max(measured['cpu'], 1e-9):>11,.0f} {measured['cpu'] / scan_cpu:>7.1f} "
                        f"{measured['rss'] / 2**20:>7,.0f} MB {measured['spill'] / 2**20:>5,.0f} MB  "
                        f"{measured['outcome']}"
                    )
            if not args.keep:
                shutil.rmtree(database.parent, ignore_errors=True)
        lichess_rows = ALL_LICHESS_GAMES * stg_share
        print(
            f"\nall of Lichess: {ALL_LICHESS_GAMES:.1e} games x {100 * stg_share:.1f}% reaching stg_games (the "
            f"2021-10 excerpt's share, moves <= 1500) = {lichess_rows:.2e} rows of stg_games, "
            f"{bucket_rows_per_stg:.2f} bucket_games rows each"
        )
        print(
            f"{'warehouse':<12} {'step':<30} {'CPU slope':>9} {'RSS slope':>9} {'CPU-h at all of Lichess':>24} "
            f"(power law from the two ends; linear from the largest size)"
        )
        for (warehouse, step), measured in results.items():
            points = [(rows, m) for rows, m in measured if "error" not in m]
            if len(points) < 2:
                continue
            cpu_slope = slope([(rows, m["cpu"]) for rows, m in points])
            rss_slope = slope([(rows, m["rss"]) for rows, m in points])
            largest, last = points[-1]
            linear = last["cpu"] / largest * lichess_rows / 3600
            power = last["cpu"] * (lichess_rows / largest) ** cpu_slope / 3600 if cpu_slope else float("nan")
            print(
                f"{warehouse:<12} {step:<30} {cpu_slope or float('nan'):>9.2f} {rss_slope or float('nan'):>9.2f} "
                f"{power:>11,.1f} (power) {linear:>7,.1f} (linear)"
            )
        print(f"load average at the end: {_load()}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _load() -> str:
    return " ".join(f"{load:.1f}" for load in os.getloadavg())


if __name__ == "__main__":
    main()
