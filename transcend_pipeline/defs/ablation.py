"""The diversity arms' data: each arm's games, its bucket built by the bucket SQL, and its gates."""

import dataclasses
from collections.abc import Iterator

import dagster as dg

from transcend_pipeline.defs.resources import DumpSource, PanelSource, TranscendHome
from transcend_pipeline.defs.training import ARMS, SEEDS_OF_ARM, ablation_partitions, experiment_months
from transcend_pipeline.defs.warehouse import DBT_ROOT, EXPECTATIONS, MODELS, project_vars
from transcend_pipeline.experiments import Experiment
from transcend_pipeline.settings import Settings, find_stockfish


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
        "A diversity arm's bucket (one partition per arm; every training seed of the arm reads it): as many games as "
        "the cap's bucket holds, with only diversity changed — on the panel, the bucket's own pairings replayed by "
        "the same players with quirks correlated by ρ, or k players of the best player's skill with their own quirks "
        "(k = 1: its self-play); on Lichess, the bucket's games of its k most active players. Built into "
        "`ablation_staging` and `ablation_bucket_*` (keyed by `variant`) by the same SQL models as every bucket, so "
        "its diversity is measured and gated the same way."
    ),
)
def ablation_games(
    context: dg.AssetExecutionContext, home: TranscendHome, dump_source: DumpSource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    from transcend_pipeline.ablation import (
        STAGING_TABLE,
        build_variant_bucket,
        most_active_players_sql,
        panel_variant_games,
        variant_gates,
    )
    from transcend_pipeline.diversity import diversity_table
    from transcend_pipeline.panel import PanelConfig
    from transcend_pipeline.warehouse import open_warehouse, replace_partition, replace_with_rows

    experiment = ARMS[context.partition_key]
    variant = experiment.variant
    months = experiment_months(experiment)
    variables = project_vars(dump_source)
    panel = isinstance(dump_source, PanelSource)
    if panel != variant.panel_only:
        raise dg.Failure(
            f"{experiment.arm}: the variant '{variant.label}' needs "
            f"{'panel' if variant.panel_only else 'Lichess'} data, but the source is {type(dump_source).__name__}"
        )
    with open_warehouse(home.warehouse_path, read_only=True) as connection:
        bucket = (
            connection.execute(
                "SELECT s.month, s.white, s.black, s.white_elo, s.black_elo FROM bucket_games AS b "
                "JOIN stg_games AS s USING (month, game_id) WHERE b.cap = ? AND list_contains(?::VARCHAR[], b.month) "
                "ORDER BY b.month, b.game_id",
                [experiment.cap, months],
            )
            .fetch_arrow_table()
            .to_pylist()
        )
        full_bucket = bucket_diversity_row(connection, dataclasses.replace(experiment, variant=None))
        panel_rows = (
            connection.execute(
                "SELECT * FROM panel_players WHERE month = (SELECT max(month) FROM panel_players "
                "WHERE list_contains(?::VARCHAR[], month))",
                [months],
            )
            .fetch_arrow_table()
            .to_pylist()
            if panel
            else []
        )
    if panel:
        context.log.info(f"{experiment.arm}: playing {len(bucket):,} games ({variant.label}), the bucket's count")
        rows = panel_variant_games(
            PanelConfig.for_profile(dump_source.profile),
            variant,
            bucket,
            panel_rows,
            experiment.cap,
            arm=experiment.arm,
            stockfish_path=find_stockfish(),
            workers=Settings.from_env().workers,
            progress=_every_thousand_games(context, len(bucket)),
        )
    with open_warehouse(home.warehouse_path) as connection:
        if panel:
            replace_with_rows(connection, STAGING_TABLE, rows, partition=("variant", experiment.arm))
        else:
            replace_partition(
                connection,
                STAGING_TABLE,
                "variant",
                experiment.arm,
                most_active_players_sql(experiment.arm, experiment.cap, months, variant.players, len(bucket)),
            )
        counts = build_variant_bucket(connection, experiment.arm, experiment.cap, MODELS, variables)
        gates = variant_gates(connection, experiment.cap, EXPECTATIONS, variables, variant.waive)
        diversity = bucket_diversity_row(connection, experiment)
        (players,) = connection.execute(
            "SELECT list(player ORDER BY games DESC, player) FROM ablation_bucket_players WHERE variant = ?",
            [experiment.arm],
        ).fetchone()
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
            "players": dg.MetadataValue.json(players[:20]),
            "training_seeds": dg.MetadataValue.json(SEEDS_OF_ARM[experiment.arm]),
            "gate": gates.status,
            "gate_exception": exception or "none",
            "diversity": dg.MetadataValue.md(diversity_table({experiment.arm: diversity, "full bucket": full_bucket})),
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
            "arm": experiment.arm,
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
    """The `bucket_diversity` row of the experiment's bucket: its cap's, or its arm's own."""
    table, column, key = (
        ("ablation_bucket_diversity", "variant", experiment.arm)
        if experiment.variant
        else ("bucket_diversity", "cap", experiment.cap)
    )
    cursor = connection.execute(f"SELECT * FROM {table} WHERE {column} = ?", [key])
    row = cursor.fetchone()
    return dict(zip([c[0] for c in cursor.description], row, strict=True)) if row else {}
