"""How long the SQL models and the quality gates take on a games table of 10 million rows.

    .venv/bin/python benchmarks/bench_quality.py            # 10M games
    .venv/bin/python benchmarks/bench_quality.py --quick    # 1M games (CI smoke run)

The gates (transcend_pipeline.quality) reduce each model to a per-cap summary in
DuckDB and let Great Expectations validate the summary. The baseline is the
naive use of GX: pull the rows into pandas and validate them there, measured on
a sample of bucket_games and extrapolated linearly to the whole table (the full
pull would need tens of GB of RAM at a real month's ~96M games).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]

from fixtures import generate_games  # noqa: E402

from transcend_pipeline.quality import load_expectations, run_suite  # noqa: E402
from transcend_pipeline.sql_models import discover_models, load_vars, materialize, topological_order  # noqa: E402

PROJECT = REPO_ROOT / "dbt_like_sql"
MONTH = "2021-10"


def timed(function, *args, **kwargs):
    """Result, wall seconds and CPU seconds (all of DuckDB's threads): CPU time is what survives a busy machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def naive_gx_seconds_per_row(
    connection: duckdb.DuckDBPyConnection, cap: int, sample_rows: int
) -> tuple[float, float, int]:
    """Wall and CPU seconds per row for the same guards run by GX on raw rows pulled into pandas (pull + validate)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    wall, cpu = time.perf_counter(), time.process_time()
    frame = connection.execute(
        "SELECT game_id, max_elo, result, split FROM bucket_games WHERE cap = ? LIMIT ?", [cap, sample_rows]
    ).df()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("raw")
        .add_dataframe_asset("bucket_games")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = gx.ExpectationSuite(name="naive")
    suite.add_expectation(gx.expectations.ExpectTableRowCountToBeBetween(min_value=1000))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeBetween(column="max_elo", max_value=cap))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeUnique(column="game_id"))
    suite.add_expectation(
        gx.expectations.ExpectColumnValuesToBeInSet(column="result", value_set=["1-0", "0-1", "1/2-1/2"])
    )
    result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    assert result.success, "the naive baseline must validate the same good data"
    return (time.perf_counter() - wall) / len(frame), (time.process_time() - cpu) / len(frame), len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1M games instead of 10M")
    parser.add_argument("--rows", type=int, help="number of games (overrides --quick)")
    parser.add_argument("--sample", type=int, default=1_000_000, help="rows of bucket_games for the naive baseline")
    args = parser.parse_args()
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)

    models = discover_models(PROJECT)
    variables = load_vars(PROJECT)
    expectations = load_expectations(PROJECT)
    with tempfile.TemporaryDirectory() as directory:
        connection = duckdb.connect(str(Path(directory) / "bench.duckdb"), config={"memory_limit": "8GB"})
        _, wall, cpu = timed(
            generate_games, connection, rows, month=MONTH, players=max(2000, rows // 200), max_moves=18
        )
        print(f"games: {rows:,} rows generated: {wall:.1f} s wall, {cpu:.1f} s CPU (DuckDB {duckdb.__version__})")
        print("(a shared 2-core machine: compare figures within this run, and CPU seconds across runs)")

        print(f"\n{'SQL model':<32} {'rows':>12} {'wall s':>8} {'CPU s':>8}")
        for name in topological_order(models):
            count, wall, cpu = timed(materialize, connection, models[name], variables, month=MONTH)
            print(f"  {name:<30} {count:>12,} {wall:8.2f} {cpu:8.2f}")

        run_suite(connection, "stg_games", expectations["stg_games"], variables)  # GX's 5 s import, once
        print(f"\n{'quality gate (summary + GX)':<32} {'outcomes':>12} {'wall s':>8} {'CPU s':>8}")
        for name, cap in (
            ("stg_games", None),
            ("bucket_games", None),
            ("bucket_games", 1500),
            ("bucket_diversity", None),
        ):
            result, wall, cpu = timed(run_suite, connection, name, expectations[name], variables, cap=cap)
            label = f"{name} ({'all' if cap is None else f'cap {cap}'})"
            status = "pass" if result.success else "FAIL"
            print(f"  {label:<30} {len(result.outcomes):>7} {status} {wall:8.2f} {cpu:8.2f}")
            if (name, cap) == ("bucket_games", 1500):
                gate_wall, gate_cpu = wall, cpu

        (bucket_rows,) = connection.execute("SELECT count(*) FROM bucket_games WHERE cap = 1500").fetchone()
        (per_row_wall, per_row_cpu, sampled), _, _ = timed(naive_gx_seconds_per_row, connection, 1500, args.sample)
        naive_wall, naive_cpu = per_row_wall * bucket_rows, per_row_cpu * bucket_rows
        print(
            f"\nbaseline: GX on raw rows pulled into pandas, 4 of the 6 bucket_games guards, cap 1500 ({bucket_rows:,} rows)"
        )
        print(f"  measured on {sampled:,} rows, extrapolated: {naive_wall:8.2f} s wall {naive_cpu:8.2f} s CPU")
        print(f"  pushdown gate, same cap, all 6 guards:        {gate_wall:8.2f} s wall {gate_cpu:8.2f} s CPU")
        print(f"  speed-up: {naive_wall / gate_wall:.1f}x wall, {naive_cpu / gate_cpu:.1f}x CPU")
        connection.close()


if __name__ == "__main__":
    main()
