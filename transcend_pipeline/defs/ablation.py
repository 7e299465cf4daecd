"""The diversity arms' data: each arm's games, its bucket built by the bucket SQL, and its gates."""

import dataclasses
from collections.abc import Iterator

import dagster as dg

from transcend_pipeline.defs.partitions import (
    ARMS,
    EXPECTATIONS,
    MODELS,
    SEEDS_OF_ARM,
    ablation_partitions,
)
from transcend_pipeline.defs.resources import DumpSource, TranscendHome
from transcend_pipeline.settings import Settings, find_stockfish
from transcend_pipeline.sql_models import PROJECT_ROOT


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
    from transcend_pipeline.queries import arm_players, cap_bucket_pairings, diversity_row, latest_panel_roster
    from transcend_pipeline.warehouse import open_warehouse, replace_partition, replace_with_rows

    experiment = ARMS[context.partition_key]
    variant = experiment.variant
    months = experiment.data_months(dump_source.months)
    variables = dump_source.sql_vars()
    panel = dump_source.panel_config()
    if (panel is not None) != variant.panel_only:
        raise dg.Failure(
            f"{experiment.arm}: the variant '{variant.label}' needs "
            f"{'panel' if variant.panel_only else 'Lichess'} data, but the source is {type(dump_source).__name__}"
        )
    with open_warehouse(home.warehouse_path, read_only=True) as connection:
        bucket = cap_bucket_pairings(connection, experiment.cap, months)
        full_bucket = diversity_row(connection, dataclasses.replace(experiment, variant=None))
        panel_rows = latest_panel_roster(connection, months) if panel is not None else []
    if panel is not None:
        context.log.info(f"{experiment.arm}: playing {len(bucket):,} games ({variant.label}), the bucket's count")
        rows = panel_variant_games(
            panel,
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
        if panel is not None:
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
        diversity = diversity_row(connection, experiment)
        players = arm_players(connection, experiment.arm)
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
            "sql": dg.MetadataValue.path(str(PROJECT_ROOT / "marts")),
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
