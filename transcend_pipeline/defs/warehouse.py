"""Every SQL model under `dbt_like_sql/` as a Dagster asset, with its Great Expectations guards as blocking checks.

The assets are built from the files: a model's dependencies are its `ref()`s and
`source()`s, so a new `.sql` file appears in the asset graph with no Python change.
Monthly models are partitioned like `games` and backfill in a single run.
"""

import hashlib
from pathlib import Path

import dagster as dg

from transcend_pipeline.defs.partitions import month_of, monthly_partitions
from transcend_pipeline.defs.resources import TranscendHome
from transcend_pipeline.sql_models import SqlModel, discover_models, load_vars, materialize, render

DBT_ROOT = Path(__file__).resolve().parents[2] / "dbt_like_sql"


def _sql_asset(model: SqlModel) -> dg.AssetsDefinition:
    partitioned = model.partitioned_by_month

    @dg.asset(
        name=model.name,
        deps=[dg.AssetKey(name) for name in (*model.refs, *model.sources)],
        partitions_def=monthly_partitions if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        group_name=model.folder,
        kinds={"duckdb", "sql"},
        pool="warehouse",
        description=model.description or f"SQL model {model.path.name}",
        code_version=hashlib.sha256(model.sql.encode()).hexdigest()[:16],
        metadata={"path": dg.MetadataValue.path(str(model.path))},
    )
    def sql_model(context: dg.AssetExecutionContext, home: TranscendHome) -> dg.MaterializeResult:
        from transcend_pipeline.warehouse import open_warehouse

        variables = load_vars(DBT_ROOT)
        months = [month_of(key) for key in context.partition_keys] if partitioned else [None]
        rows = 0
        with open_warehouse(home.warehouse_path) as connection:
            for month in months:
                rows = materialize(connection, model, variables, month=month)
                context.log.info(f"{model.name}{f' {month}' if month else ''}: {rows:,} rows")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "sql": dg.MetadataValue.md(f"```sql\n{render(model, variables, month=months[-1])}\n```"),
            }
        )

    return sql_model


sql_model_assets = [_sql_asset(model) for model in discover_models(DBT_ROOT).values()]
