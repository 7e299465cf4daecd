"""`transcend run` / `transcend study` / `transcend ui`: the commands behind `make run`, `make study`, `make ui`.

`run` materialises the default asset graph stage by stage through the jobs of
`transcend_pipeline.definitions`, recording every run in $DAGSTER_HOME (inside
the data directory) so the UI shows them afterwards, and ends with a summary.
`study` does the same for every seed of every arm of the diversity study, skipping
the partitions an earlier run already materialised.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from transcend_pipeline.settings import Settings, default_months, ensure_dagster_home


def _prepare_environment() -> Settings:
    settings = Settings.from_env()
    os.environ["TRANSCEND_HOME"] = str(settings.home)
    os.environ.setdefault("DAGSTER_HOME", str(ensure_dagster_home(settings.home)))
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings


def run(months: list[str] | None = None, *, study: str | None = None) -> int:
    """Materialise the default experiments (`make run`), or every experiment of a study (`make study`)."""
    settings = _prepare_environment()
    import dagster as dg

    from transcend_pipeline.definitions import build_definitions
    from transcend_pipeline.experiments import load_experiments

    months = months or default_months(settings)
    defs = build_definitions(months)
    instance = dg.DagsterInstance.get()
    started = time.monotonic()
    print(f"transcend: source={settings.source} profile={settings.profile} home={settings.home} months={months}")
    experiments = {name: e for name, e in load_experiments().items() if (e.study == study if study else e.by_default)}
    arms = list(dict.fromkeys(e.arm for e in experiments.values() if e.variant))
    stages = [("ingest_month", f"{month}-01", "games") for month in months]
    stages += [("build_ladder", None, "opponent_ladder")]
    stages += [("build_ablation", arm, "arm_baselines") for arm in arms]
    stages += [("train_experiment", name, "state_advantage") for name in experiments]
    stages += [("diversity_study" if study else "report", None, None)]
    failed: list[str] = []
    pending = []
    for job, partition, last_asset in stages:
        label = f"{job}{f' [{partition}]' if partition else ''}"
        if study and last_asset and _materialized(instance, last_asset, partition):
            print(f"transcend: {label} is already materialised: skipped", flush=True)
            continue
        if job == "train_experiment":  # independent of each other: run on parallel_experiments processes
            pending.append(partition)
            continue
        failed += _run_experiments(pending, months, settings.parallel_experiments)
        pending = []
        print(f"\ntranscend: {label}", flush=True)
        result = defs.get_job_def(job).execute_in_process(
            partition_key=partition, instance=instance, raise_on_error=False
        )
        if not result.success:
            failed.append(f"{job}[{partition}] (run {result.run_id})")
            if job in ("ingest_month", "build_ladder"):
                break
    print_summary(settings, time.monotonic() - started)
    if failed:
        print("transcend: failed: " + ", ".join(failed) + " — open `make ui` to see why.", file=sys.stderr)
    return 1 if failed else 0


def _run_experiments(experiments: list[str], months: list[str], parallel: int) -> list[str]:
    """`train_experiment` for each experiment, `parallel` at a time in processes of their own (training uses one
    core, and the warehouse serialises their short writes); returns the failed ones. The results do not depend on
    `parallel`: every stage is seeded by its experiment alone."""
    if parallel <= 1 or len(experiments) <= 1:
        return [failure for experiment in experiments if (failure := _train_experiment(experiment, months))]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(parallel, len(experiments)), multiprocessing.get_context("spawn")) as pool:
        runs = pool.map(_train_experiment, experiments, [months] * len(experiments))
        return [failure for failure in runs if failure]


def _train_experiment(experiment: str, months: list[str]) -> str | None:
    import dagster as dg

    from transcend_pipeline.definitions import build_definitions

    defs = build_definitions(months)

    print(f"\ntranscend: train_experiment [{experiment}]", flush=True)
    result = defs.get_job_def("train_experiment").execute_in_process(
        partition_key=experiment, instance=dg.DagsterInstance.get(), raise_on_error=False
    )
    return None if result.success else f"train_experiment[{experiment}] (run {result.run_id})"


def _materialized(instance, asset: str, partition: str | None) -> bool:
    """Whether the asset (partition) has been materialised in this data directory's run history."""
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    return bool(records)


def print_summary(settings: Settings, seconds: float) -> None:
    """What was materialised and where it lives."""
    from transcend_pipeline.defs.resources import TranscendHome
    from transcend_pipeline.warehouse import open_warehouse

    home = TranscendHome(path=str(settings.home), lake_path=str(settings.lake or ""))
    print(f"\ntranscend: done in {seconds / 60:.1f} min. Data directory: {settings.home}")
    for path in sorted(home.raw_dir.rglob("*.pgn.zst")):
        print(f"  raw dump   {path.relative_to(settings.home)}  ({path.stat().st_size / 1e6:,.1f} MB)")
    with open_warehouse(home.warehouse_path, read_only=True, lake=home.lake) as connection:
        tables = connection.execute(  # a lake's table (registered, in the temp catalog) hides the file's namesake
            "SELECT DISTINCT ON (table_name) table_name, table_catalog = 'temp' AS in_lake "
            "FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name, in_lake DESC"
        ).fetchall()
        for table, in_lake in tables:
            (rows,) = connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            print(f"  table      {table:<24} {rows:>10,} rows   ({home.lake if in_lake else home.warehouse_path.name})")
    for metrics in sorted((settings.home / "checkpoints").glob("*/metrics.json")):
        summary = json.loads(metrics.read_text())
        print(
            f"  model      {metrics.parent.name:<24} {summary['steps']:>6} steps (best {summary.get('best_step', '?')}), val top-1 "
            f"{(summary['val_top1'] or 0):.1%}  ({Path(summary['checkpoint']).relative_to(settings.home)})"
        )
    report = home.reports_dir / "transcendence.md"
    if report.exists():
        print_verdicts(home.warehouse_path)
        print(f"  report     {report}  (figure: {report.with_suffix('.png')})")
    print(f"  run history {Path(os.environ['DAGSTER_HOME'])}  (browse it with `make ui`)")


def print_verdicts(warehouse_path: Path) -> None:
    """The verdict table: per experiment, its confirmatory τ and games, and each claim as a difference with its
    Holm-corrected interval (the same lines as the report)."""
    from transcend_pipeline.evaluation import verdict_table
    from transcend_pipeline.warehouse import open_warehouse

    with open_warehouse(warehouse_path, read_only=True) as connection:
        verdicts = connection.execute("SELECT * FROM transcendence ORDER BY cap, experiment").fetch_arrow_table()
    print("\n" + verdict_table(verdicts.to_pylist()))


def exec_dagster(*arguments: str) -> int:
    """Run a `dagster` command with DAGSTER_HOME in the data directory (created first); replaces this process."""
    _prepare_environment()
    dagster = Path(sys.executable).with_name("dagster")
    os.execv(dagster, [str(dagster), *arguments])
    return 0  # unreachable: execv does not return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transcend", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="materialise the default asset graph")
    run_parser.add_argument("--month", action="append", help="YYYY-MM; repeat for several (default: see README)")
    study_parser = commands.add_parser("study", help="materialise every arm and seed of the diversity study")
    study_parser.add_argument("--month", action="append", help="YYYY-MM; repeat for several (default: see README)")
    ui_parser = commands.add_parser("ui", help="start the Dagster UI on 127.0.0.1")
    ui_parser.add_argument("--port", type=int, default=3000)
    commands.add_parser("validate", help="`dagster definitions validate` on workspace.yaml")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.month)
    if args.command == "study":
        return run(args.month, study="diversity")
    if args.command == "ui":
        return exec_dagster("dev", "-h", "127.0.0.1", "-p", str(args.port), "-w", "workspace.yaml")
    return exec_dagster("definitions", "validate", "-w", "workspace.yaml")


if __name__ == "__main__":
    sys.exit(main())
