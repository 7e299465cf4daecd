"""Jobs and schedules: monthly ingestion of the last complete month through the SQL models, and backfills; and the
executor that runs their steps."""

import os

import dagster as dg

CELERY_BROKER_VARIABLE = "TRANSCEND_CELERY_BROKER"


def celery_result_backend(broker_url: str) -> str:
    """Where a step's result goes back to its run: Redis stores it (the broker's own URL); with RabbitMQ
    (`amqp://`, `amqps://`) it is a message to the run process (`rpc://`), as Celery 5 has no AMQP result store."""
    return "rpc://" if broker_url.strip().lower().startswith(("amqp", "pyamqp")) else broker_url


def executor_from_env() -> dg.ExecutorDefinition | None:
    """dagster-celery's executor when $TRANSCEND_CELERY_BROKER names a broker (Redis or RabbitMQ), else None
    (Dagster's default: each step in a process of its own on this machine; `make run` executes in process either
    way).

    The config holds an `env:` reference, resolved when a run starts, so the URL and its password reach neither
    the definitions, the run config nor the event log. Workers run `celery -A transcend_pipeline.celery_worker
    worker`, with the same URL in $CELERY_BROKER_URL and `celery_result_backend` of it in $CELERY_RESULT_BACKEND
    (docs/scaling-out.md).
    """
    broker_url = os.environ.get(CELERY_BROKER_VARIABLE, "").strip()
    if not broker_url:
        return None
    from dagster_celery import celery_executor

    broker = {"env": CELERY_BROKER_VARIABLE}
    backend = celery_result_backend(broker_url)
    return celery_executor.configured(
        {"broker": broker, "backend": broker if backend == broker_url else backend}, name="celery"
    )


ingest_month_job = dg.define_asset_job(
    "ingest_month",
    selection=dg.AssetSelection.groups("ingestion", "staging", "marts"),
    description=(
        "Fetch one month's dump, parse it into the warehouse and rebuild the rating buckets from every month "
        "ingested so far (the bucket tables are whole-table models, rebuilt atomically)."
    ),
)

# Lichess publishes a month's dump in the first days of the next month: run on the 5th, for the month just ended.
monthly_ingest_schedule = dg.build_schedule_from_partitioned_job(
    ingest_month_job, day_of_month=5, hour_of_day=6, default_status=dg.DefaultScheduleStatus.STOPPED
)

train_experiment_job = dg.define_asset_job(
    "train_experiment",
    selection=dg.AssetSelection.assets("training_set", "chessformer", "evaluation_games", "state_advantage"),
    description=(
        "Build one experiment's training set (only if its bucket passed the quality gates), train it, play it "
        "at every temperature, and measure where its low-temperature gain comes from (state advantage)."
    ),
)

ablation_job = dg.define_asset_job(
    "build_ablation",
    selection=dg.AssetSelection.groups("ablation"),
    description=(
        "Build a diversity arm's bucket (its games, its diversity, its gates with the declared exceptions) and rate "
        "its own experts against the ladder (after `build_ladder`); then `train_experiment` trains and plays each "
        "of its seeds like any experiment."
    ),
)

ladder_job = dg.define_asset_job(
    "build_ladder",
    selection=dg.AssetSelection.assets("opponent_ladder"),
    description=(
        "Build the opponent ladder every model meets, its opening book and its calibration round robin, and play "
        "the buckets' baselines (best player, clone, consensus) against it; once per run, before any evaluation."
    ),
)

report_job = dg.define_asset_job(
    "report",
    selection=dg.AssetSelection.assets("ratings", "transcendence_report", "diversity_report"),
    description="Rate every evaluated experiment and write the transcendence report and the diversity study.",
)

diversity_study_job = dg.define_asset_job(
    "diversity_study",
    selection=dg.AssetSelection.assets("ratings", "transcendence_report", "diversity_report"),
    description=(
        "The diversity study's verdicts and figures, over every arm evaluated so far. Its arms are the experiments "
        "with `study: diversity` in experiments.yaml, every seed: build them first (`make study` does it all: "
        "`build_ablation` for each arm, then `train_experiment` for each of their partitions; in the UI, backfill "
        "those jobs over the same partitions), then launch this job."
    ),
)

# Evaluates the bucket tables' automation conditions (they rebuild when a month they read changes); on by default,
# unlike Dagster's default_automation_condition_sensor, so that the UI keeps them up to date with no toggle.
bucket_rebuild_sensor = dg.AutomationConditionSensorDefinition(
    "rebuild_buckets_when_a_month_changes",
    target=dg.AssetSelection.groups("marts"),
    default_status=dg.DefaultSensorStatus.RUNNING,
)

defs = dg.Definitions(
    jobs=[ingest_month_job, ablation_job, ladder_job, train_experiment_job, report_job, diversity_study_job],
    schedules=[monthly_ingest_schedule],
    sensors=[bucket_rebuild_sensor],
)
