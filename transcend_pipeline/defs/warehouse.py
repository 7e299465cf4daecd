"""Every SQL model under `dbt_like_sql/` as a Dagster asset, with its Great Expectations guards as blocking checks.

The assets are built from the files: a model's dependencies are its `ref()`s and
`source()`s, so a new `.sql` file appears in the asset graph with no Python change.
Monthly models are partitioned like `games` and backfill in a single run.
"""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from transcend_pipeline.defs.partitions import CAPS, EXPECTATIONS, MODELS, check_name, month_of, monthly_partitions
from transcend_pipeline.defs.resources import MONTH_WRITER_POOL, DumpSource, TranscendHome
from transcend_pipeline.sql_models import SqlModel, materialize, render

# Dagster's stale status does not cross a monthly -> whole-table edge (an AllPartitionMapping; dagster-io/dagster
# #21146), so the UI would show the bucket tables as fresh after a month is rebuilt on its own. Instead they rebuild
# themselves (with their gates) when a month they read changes; `any_deps_missing` is dropped, or every month never
# ingested would block them forever. The monthly job rebuilds them in the same run, which this does not repeat.
REBUILD_WHEN_A_MONTH_CHANGES = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


def _database(home: TranscendHome, model: SqlModel) -> Path | None:
    """The DuckDB file a model is built and checked in; None (an in-memory database) for a monthly model on the lake,
    which reads and writes only Delta tables and so need not wait for the file's one writer."""
    return None if home.lake is not None and model.partitioned_by_month else home.warehouse_path


def _sql_asset(model: SqlModel) -> dg.AssetsDefinition:
    partitioned = model.partitioned_by_month

    @dg.asset(
        name=model.name,
        deps=[dg.AssetKey(name) for name in (*model.refs, *model.sources)],
        partitions_def=monthly_partitions if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        group_name=model.folder,
        kinds={"duckdb", "sql"},
        pool=MONTH_WRITER_POOL if partitioned else "warehouse",
        description=model.description or f"SQL model {model.path.name}",
        code_version=hashlib.sha256(model.sql.encode()).hexdigest()[:16],
        automation_condition=None if partitioned else REBUILD_WHEN_A_MONTH_CHANGES,
        metadata={"path": dg.MetadataValue.path(str(model.path))},
    )
    def sql_model(
        context: dg.AssetExecutionContext, home: TranscendHome, dump_source: DumpSource
    ) -> dg.MaterializeResult:
        from transcend_pipeline.warehouse import open_warehouse

        variables = dump_source.sql_vars()
        months = [month_of(key) for key in context.partition_keys] if partitioned else [None]
        rows = 0
        with open_warehouse(_database(home, model), lake=home.lake) as connection:
            for month in months:
                rows = materialize(connection, model, variables, month=month, lake=home.lake)
                context.log.info(f"{model.name}{f' {month}' if month else ''}: {rows:,} rows")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "target": dump_source.dbt_target,
                "sql": dg.MetadataValue.md(f"```sql\n{render(model, variables, month=months[-1])}\n```"),
            }
        )

    return sql_model


def _quality_gate(model: SqlModel, expectations: list[dict]) -> dg.AssetChecksDefinition:
    """The model's Great Expectations suite as checks: one per cap for bucket models, so that a failing bucket
    shows which cap failed, and `training_set` refuses exactly the experiments on that bucket.

    A whole-table check (stg_games) blocks the models downstream in its run. A per-cap check does not: Dagster
    blocks whole assets, so one small bucket failing (a sample's or an early month's 1000 bucket without a test
    split) would skip bucket_players and bucket_diversity for every cap, and with them the other caps' diversity
    gates; the block is per cap in `training_set`, which reads its own cap's latest results."""
    caps: list[int | None] = list(CAPS) if model.checked_per_cap else [None]
    specs = [
        dg.AssetCheckSpec(
            check_name(cap),
            asset=model.name,
            blocking=not model.checked_per_cap,
            automation_condition=REBUILD_WHEN_A_MONTH_CHANGES if not model.partitioned_by_month else None,
            description=f"GX suite for {model.name}{f' (bucket {cap})' if cap else ''}: "
            + ", ".join(expectation["name"] for expectation in expectations),
        )
        for cap in caps
    ]

    @dg.multi_asset_check(specs=specs, name=f"{model.name}_quality_gate")
    def quality_gate(
        context: dg.AssetCheckExecutionContext, home: TranscendHome, dump_source: DumpSource
    ) -> Iterator[dg.AssetCheckResult]:
        from transcend_pipeline.quality import run_suite
        from transcend_pipeline.warehouse import open_warehouse

        with open_warehouse(_database(home, model), read_only=True, lake=home.lake) as connection:
            suite = run_suite(connection, model.name, expectations, dump_source.sql_vars())
        context.log.info(f"{model.name}: {len(suite.outcomes)} expectations in {suite.seconds:.1f} s")
        for cap in caps:
            outcomes = [outcome for outcome in suite.outcomes if outcome.cap == cap]
            yield dg.AssetCheckResult(
                asset_key=model.name,
                check_name=check_name(cap),
                passed=bool(outcomes) and all(outcome.success for outcome in outcomes),
                metadata={
                    f"{outcome.name}": dg.MetadataValue.json(
                        {"passed": outcome.success, "observed": outcome.observed, "expected": outcome.expected}
                    )
                    for outcome in outcomes
                }
                | {
                    "failed": ", ".join(outcome.name for outcome in outcomes if not outcome.success) or "none",
                    "target": dump_source.dbt_target,
                },
            )

    return quality_gate


sql_model_assets = [_sql_asset(model) for model in MODELS.values()]
quality_gates = [
    _quality_gate(MODELS[name], expectations) for name, expectations in EXPECTATIONS.items() if expectations
]
