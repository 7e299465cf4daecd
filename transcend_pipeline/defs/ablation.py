"""The diversity ablation's data: each variant experiment's games, its bucket built by the bucket SQL, and its gates."""

import dataclasses
from collections.abc import Iterator

import dagster as dg

from transcend_pipeline.defs.resources import DumpSource, PanelSource, TranscendHome
from transcend_pipeline.defs.training import EXPERIMENTS, ablation_partitions, experiment_months
from transcend_pipeline.defs.warehouse import DBT_ROOT, EXPECTATIONS, MODELS, project_vars
from transcend_pipeline.experiments import Experiment
from transcend_pipeline.settings import find_stockfish


@dg.asset(
    deps=[
        "bucket_games",
        dg.AssetDep("stg_games", partition_mapping=dg.AllPartitionMapping()),
        dg.AssetDep("panel_players", partition_mapping=dg.AllPartitionMapping()),
    ],
    partitions_def=ablation_partitions,
    group_name="ablation",
    kinds={"duckdb", "sql"},
    check_specs=[
        dg.AssetCheckSpec(
            "quality_gates",
            asset="ablation_games",
            blocking=True,
            description=(
                "The bucket quality gates (GX suites of bucket_games and bucket_diversity) run on the variant's "
                "bucket. The expectations the experiment waives (diversity, by design) may fail: the check then "
                "warns, labelled as an exception; any other failing guard blocks its training."
            ),
        )
    ],
    description=(
        "A diversity ablation's bucket: as many games as the experiment's cap bucket holds, played by only k of its "
        "players — on the panel, new games (the best player's self-play for k = 1, a round robin of k players "
        "otherwise); on Lichess, the bucket's games of its k most active players. Built into `ablation_staging` and "
        "`ablation_bucket_*` by the same SQL models as every bucket, so its diversity is measured the same way."
    ),
)
def ablation_games(
    context: dg.AssetExecutionContext, home: TranscendHome, dump_source: DumpSource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    from transcend_pipeline.ablation import (
        STAGING_TABLE,
        build_variant_bucket,
        choose_players,
        most_active_players_sql,
        panel_variant_games,
        variant_gates,
    )
    from transcend_pipeline.evaluation import diversity_table
    from transcend_pipeline.panel import PanelConfig
    from transcend_pipeline.warehouse import open_warehouse, replace_partition, replace_with_rows

    experiment = EXPERIMENTS[context.partition_key]
    variant = experiment.variant
    months = experiment_months(experiment)
    variables = project_vars(dump_source)
    with open_warehouse(home.warehouse_path, read_only=True) as connection:
        (n_games,) = connection.execute(
            "SELECT count(*) FROM bucket_games WHERE cap = ? AND list_contains(?::VARCHAR[], month)",
            [experiment.cap, months],
        ).fetchone()
        full_bucket = bucket_diversity_row(connection, dataclasses.replace(experiment, variant=None))
        panel_rows = (
            connection.execute(
                "SELECT * FROM panel_players WHERE month = (SELECT max(month) FROM panel_players "
                "WHERE list_contains(?::VARCHAR[], month))",
                [months],
            )
            .fetch_arrow_table()
            .to_pylist()
            if isinstance(dump_source, PanelSource)
            else []
        )
    if isinstance(dump_source, PanelSource):
        chosen = choose_players(panel_rows, experiment.cap, variant.players)
        context.log.info(
            f"{experiment.name}: playing {n_games:,} games among {[row['player'] for row in chosen]} "
            f"(the {experiment.cap} bucket's game count)"
        )
        rows = panel_variant_games(
            PanelConfig.for_profile(dump_source.profile),
            chosen,
            n_games,
            experiment=experiment.name,
            month=months[-1],
            stockfish_path=find_stockfish(),
            progress=_every_thousand_games(context, n_games),
        )
    with open_warehouse(home.warehouse_path) as connection:
        if isinstance(dump_source, PanelSource):
            replace_with_rows(connection, STAGING_TABLE, rows, partition=("experiment", experiment.name))
        else:
            replace_partition(
                connection,
                STAGING_TABLE,
                "experiment",
                experiment.name,
                most_active_players_sql(experiment.name, experiment.cap, months, variant.players, n_games),
            )
        counts = build_variant_bucket(connection, experiment.name, experiment.cap, MODELS, variables)
        gates = variant_gates(connection, experiment.cap, EXPECTATIONS, variables, variant.waive)
        diversity = bucket_diversity_row(connection, experiment)
    exception = (
        f"EXCEPTION for this ablation only ({variant.label}): {', '.join(gates.waived)} fail by design and are "
        "waived; every other guard holds"
        if gates.status == "exception"
        else None
    )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": counts["bucket_games"],
            "variant": variant.label,
            "players": dg.MetadataValue.json(
                [row["player"] for row in chosen] if isinstance(dump_source, PanelSource) else variant.players
            ),
            "gate": gates.status,
            "gate_exception": exception or "none",
            "diversity": dg.MetadataValue.md(diversity_table({experiment.name: diversity, "full bucket": full_bucket})),
            "sql": dg.MetadataValue.path(str(DBT_ROOT / "marts")),
        }
    )
    yield dg.AssetCheckResult(
        check_name="quality_gates",
        passed=gates.status == "passed",
        severity=dg.AssetCheckSeverity.WARN if gates.status == "exception" else dg.AssetCheckSeverity.ERROR,
        metadata={
            outcome.name: dg.MetadataValue.json(
                {
                    "passed": outcome.success,
                    "observed": outcome.observed,
                    "expected": outcome.expected,
                    "waived": outcome.name in gates.waived,
                }
            )
            for outcome in gates.outcomes
        }
        | {
            "experiment": experiment.name,
            "failed": ", ".join(gates.failed) or "none",
            "exception": exception or "none",
        },
    )


def _every_thousand_games(context: dg.AssetExecutionContext, total: int):
    logged = [0]

    def report(done: int, seconds: float) -> None:
        if done - logged[0] >= 1000 or done == total:
            logged[0] = done
            context.log.info(f"{done:,}/{total:,} games, {done / seconds:.1f}/s")

    return report


def bucket_diversity_row(connection, experiment: Experiment) -> dict:
    """The `bucket_diversity` row of the experiment's bucket: its cap's, or its ablation's own."""
    table, column, key = (
        ("ablation_bucket_diversity", "experiment", experiment.name)
        if experiment.variant
        else ("bucket_diversity", "cap", experiment.cap)
    )
    cursor = connection.execute(f"SELECT * FROM {table} WHERE {column} = ?", [key])
    row = cursor.fetchone()
    return dict(zip([c[0] for c in cursor.description], row, strict=True)) if row else {}
