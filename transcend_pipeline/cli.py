"""`transcend run` / `transcend ui`: the commands behind `make run` and `make ui`.

`run` materialises the default asset graph stage by stage through the jobs of
`transcend_pipeline.definitions`, recording every run in $DAGSTER_HOME (inside
the data directory) so the UI shows them afterwards, and ends with a summary.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from transcend_pipeline.settings import Settings, ensure_dagster_home

DEFAULT_PANEL_MONTHS = ("2025-01",)


def _prepare_environment() -> Settings:
    settings = Settings.from_env()
    os.environ["TRANSCEND_HOME"] = str(settings.home)
    os.environ.setdefault("DAGSTER_HOME", str(ensure_dagster_home(settings.home)))
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings


def default_months(settings: Settings) -> list[str]:
    """$TRANSCEND_MONTHS (comma-separated YYYY-MM), else the panel's demo month or Lichess's last complete month."""
    if months := os.environ.get("TRANSCEND_MONTHS"):
        return [month.strip() for month in months.split(",") if month.strip()]
    if settings.source == "panel":
        return list(DEFAULT_PANEL_MONTHS)
    from transcend_pipeline.defs.partitions import monthly_partitions

    return [monthly_partitions.get_last_partition_key()[:7]]


def run(months: list[str] | None = None) -> int:
    settings = _prepare_environment()
    import dagster as dg

    from transcend_pipeline.definitions import defs

    months = months or default_months(settings)
    instance = dg.DagsterInstance.get()
    started = time.monotonic()
    print(f"transcend: source={settings.source} profile={settings.profile} home={settings.home} months={months}")
    for month in months:
        result = defs.get_job_def("ingest_month").execute_in_process(
            partition_key=f"{month}-01", instance=instance, raise_on_error=False
        )
        if not result.success:
            print(f"transcend: ingestion of {month} failed; see the run {result.run_id} in `make ui`.", file=sys.stderr)
            return 1
    print_summary(settings, time.monotonic() - started)
    return 0


def print_summary(settings: Settings, seconds: float) -> None:
    """What was materialised and where it lives."""
    from transcend_pipeline.warehouse import open_warehouse

    print(f"\ntranscend: done in {seconds / 60:.1f} min. Data directory: {settings.home}")
    for path in sorted(settings.raw_dir.rglob("*.pgn.zst")):
        print(f"  raw dump   {path.relative_to(settings.home)}  ({path.stat().st_size / 1e6:,.1f} MB)")
    with open_warehouse(settings.warehouse_path, read_only=True) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name"
        ).fetchall()
        for (table,) in tables:
            (rows,) = connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            print(f"  table      {table:<24} {rows:>10,} rows   ({settings.warehouse_path.name})")
    print(f"  run history {Path(os.environ['DAGSTER_HOME'])}  (browse it with `make ui`)")


def ui(port: int) -> int:
    """The Dagster UI on 127.0.0.1 with run history in the data directory; replaces this process."""
    _prepare_environment()
    dagster = Path(sys.executable).with_name("dagster")
    os.execv(dagster, [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"])
    return 0  # unreachable: execv does not return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transcend", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="materialise the default asset graph")
    run_parser.add_argument("--month", action="append", help="YYYY-MM; repeat for several (default: see README)")
    ui_parser = commands.add_parser("ui", help="start the Dagster UI on 127.0.0.1")
    ui_parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.month)
    return ui(args.port)


if __name__ == "__main__":
    sys.exit(main())
