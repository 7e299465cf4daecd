"""The diversity arms' data: each arm's games, its bucket built by the bucket SQL, and its gates."""

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
from transcend_pipeline.settings import find_stockfish
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
    from transcend_pipeline.ablation import build_arm
    from transcend_pipeline.diversity import diversity_table

    experiment = ARMS[context.partition_key]
    try:
        arm = build_arm(
            home.warehouse_path,
            experiment,
            experiment.data_months(dump_source.months),
            dump_source.sql_vars(),
            MODELS,
            EXPECTATIONS,
            panel=dump_source.panel_config(),
            stockfish_path=find_stockfish(),
            workers=dump_source.workers,
            log=context.log.info,
            lake=home.lake,
        )
    except ValueError as error:  # a variant for the other source's data
        raise dg.Failure(str(error)) from error
    gates, label = arm.gates, experiment.variant.label
    exception = f"EXCEPTION for this ablation only ({label}): {arm.exception}" if arm.exception else "none"
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": arm.counts["bucket_games"],
            "variant": label,
            "players": dg.MetadataValue.json(arm.players[:20]),
            "training_seeds": dg.MetadataValue.json(SEEDS_OF_ARM[experiment.arm]),
            "gate": gates.status,
            "gate_exception": exception,
            "diversity": dg.MetadataValue.md(
                diversity_table({experiment.arm: arm.diversity, "full bucket": arm.full_bucket_diversity})
            ),
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
        | {"arm": experiment.arm, "failed": ", ".join(gates.failed) or "none", "exception": exception},
    )
