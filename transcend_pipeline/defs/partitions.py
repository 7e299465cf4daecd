"""What the asset graph is built from, shared by every `defs/` module: the partitions, the experiment table and the
SQL project. The `defs/` modules import this and `resources`, never each other; they name each other's assets by key.
"""

from __future__ import annotations

import dagster as dg

from transcend_pipeline.experiments import load_experiments
from transcend_pipeline.quality import load_expectations
from transcend_pipeline.sql_models import PROJECT_ROOT, discover_models, load_vars

FIRST_MONTH = "2013-01-01"  # the first month of the Lichess open database

# end_offset=0: the newest partition is the last *complete* month, which Lichess publishes in its first days.
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, end_offset=0)

EXPERIMENTS = load_experiments()
experiment_partitions = dg.StaticPartitionsDefinition(list(EXPERIMENTS))
#: The diversity arms: each variant row's data (`ablation_games`), shared by every training seed of the row.
ARMS = {experiment.arm: experiment for experiment in EXPERIMENTS.values() if experiment.variant}
ablation_partitions = dg.StaticPartitionsDefinition(list(ARMS))
SEEDS_OF_ARM = {
    arm: [name for name, experiment in EXPERIMENTS.items() if experiment.arm == arm and experiment.variant]
    for arm in ARMS
}

MODELS = discover_models(PROJECT_ROOT)
EXPECTATIONS = load_expectations(PROJECT_ROOT)
CAPS = [int(cap) for cap in load_vars(PROJECT_ROOT)["caps"]]


def check_name(cap: int | None) -> str:
    """`cap_1000` for a bucket's gate (the checks of the SQL models, and what `training_set` looks up), `expectations` for a model checked as a whole."""
    return "expectations" if cap is None else f"cap_{cap}"


def month_of(partition_key: str) -> str:
    """'2021-10-01' -> '2021-10': the form used in file names and the `month` column."""
    return partition_key[:7]
