"""Partitions shared across the asset graph."""

from __future__ import annotations

import dagster as dg

FIRST_MONTH = "2013-01-01"  # the first month of the Lichess open database

# end_offset=0: the newest partition is the last *complete* month, which Lichess publishes in its first days.
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, end_offset=0)


def month_of(partition_key: str) -> str:
    """'2021-10-01' -> '2021-10': the form used in file names and the `month` column."""
    return partition_key[:7]
