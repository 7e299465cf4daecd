"""Jobs and schedules: monthly ingestion of the last complete month, and backfills of month ranges."""

from __future__ import annotations

import dagster as dg

ingest_month_job = dg.define_asset_job(
    "ingest_month",
    selection=dg.AssetSelection.groups("ingestion"),
    description="Fetch one month's dump and parse it into the warehouse.",
)

# Lichess publishes a month's dump in the first days of the next month: run on the 5th, for the month just ended.
monthly_ingest_schedule = dg.build_schedule_from_partitioned_job(
    ingest_month_job, day_of_month=5, hour_of_day=6, default_status=dg.DefaultScheduleStatus.STOPPED
)

defs = dg.Definitions(jobs=[ingest_month_job], schedules=[monthly_ingest_schedule])
