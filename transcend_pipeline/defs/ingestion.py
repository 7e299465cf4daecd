"""Ingestion assets: a month's raw Lichess-format dump, and its games parsed into DuckDB."""

import dagster as dg

from transcend_pipeline.defs.partitions import CAPS, month_of, monthly_partitions
from transcend_pipeline.defs.resources import MONTH_WRITER_POOL, DumpSource, TranscendHome


class IngestConfig(dg.Config):
    """Run config of `games`. Moves are kept (and checked for legality) only for games that can enter a bucket:
    storing every game's moves costs ~60% more time per game, and games above the largest cap never train."""

    workers: int = 2
    moves_max_elo: int | None = max(CAPS)


@dg.asset(
    partitions_def=monthly_partitions,
    group_name="ingestion",
    kinds={"file", "zstd"},
    description=(
        "The month's `lichess_db_standard_rated_YYYY-MM.pgn.zst` under $TRANSCEND_HOME/raw/<source>/: "
        "downloaded from the Lichess open database (streamed, resumable, sha256-verified) or written by the "
        "synthetic player panel, depending on $TRANSCEND_SOURCE."
    ),
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
)
def raw_dump(context: dg.AssetExecutionContext, home: TranscendHome, dump_source: DumpSource) -> dg.MaterializeResult:
    month = month_of(context.partition_key)
    fetched = dump_source.fetch(month, home.raw_dir / dump_source.label, context.log)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(fetched.path)),
            "bytes": fetched.bytes,
            "sha256": fetched.sha256,
            "source": fetched.origin,
            "seconds": round(fetched.seconds, 2),
            "created": fetched.created,
        },
        data_version=dg.DataVersion(fetched.sha256),
    )


@dg.asset(
    deps=[raw_dump],
    partitions_def=monthly_partitions,
    group_name="ingestion",
    kinds={"duckdb"},
    pool=MONTH_WRITER_POOL,
    description=(
        "One row per game of the month in the DuckDB table `games` (moves as UCI lists for games under the largest "
        "cap); games that cannot be read "
        "go to `games_quarantine` with a reason. Games read = accepted + quarantined, for every partition. "
        "Rerunning a month replaces its rows in one transaction. With $TRANSCEND_WAREHOUSE=lake, both tables are "
        "Delta tables under $TRANSCEND_LAKE, each month replaced in one commit per table."
    ),
)
def games(
    context: dg.AssetExecutionContext, config: IngestConfig, home: TranscendHome, dump_source: DumpSource
) -> dg.MaterializeResult:
    from transcend_pipeline.ingest import ingest_month
    from transcend_pipeline.lichess import dump_filename

    month = month_of(context.partition_key)
    dump_path = home.raw_dir / dump_source.label / dump_filename(month)
    if not dump_path.exists():
        raise dg.Failure(f"{dump_path} does not exist: materialise raw_dump for {month} first.")

    def progress(games_read: int, seconds: float) -> None:
        context.log.info(f"{month}: {games_read:,} games read, {games_read / max(seconds, 1e-9):,.0f} games/s")

    result = ingest_month(
        dump_path,
        month,
        home.warehouse_path,
        staging_dir=home.staging_dir / f"games-{month}",
        workers=config.workers,
        moves_max_elo=config.moves_max_elo,
        progress=progress,
        lake=home.lake,
    )
    if result.games_read != result.games_accepted + result.games_quarantined:
        raise dg.Failure(f"{month}: counts do not balance: {result}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.games_accepted,
            "games_read": result.games_read,
            "games_accepted": result.games_accepted,
            "games_quarantined": result.games_quarantined,
            "quarantine_reasons": dg.MetadataValue.json(result.quarantine_reasons),
            "games_per_second": round(result.games_per_second),
            "seconds": round(result.seconds, 2),
            "pgn_megabytes": round(result.pgn_bytes / 1e6, 1),
        }
    )


@dg.asset(
    deps=[raw_dump],
    partitions_def=monthly_partitions,
    group_name="ingestion",
    kinds={"duckdb"},
    pool="warehouse",
    description=(
        "The ground truth behind a synthetic panel dump, in the DuckDB table `panel_players`: each player's "
        "temperature, bias scale, shared-bias weight, rating written into the month's dump and games played. "
        "Empty for Lichess months, whose players' skills are unknown."
    ),
)
def panel_players(
    context: dg.AssetExecutionContext, home: TranscendHome, dump_source: DumpSource
) -> dg.MaterializeResult:
    from transcend_pipeline.lichess import dump_filename
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

    month = month_of(context.partition_key)
    rows = dump_source.ground_truth(month, home.raw_dir / dump_source.label / dump_filename(month))
    if rows:
        with open_warehouse(home.warehouse_path) as connection:
            replace_with_rows(connection, "panel_players", rows, partition=("month", month))
    rated = sorted((row for row in rows if row["rating"] is not None), key=lambda row: -row["rating"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "players": dg.MetadataValue.md(
                "| player | rating | games | temperature | bias scale |\n|---|---|---|---|---|\n"
                + "\n".join(
                    f"| {r['player']} | {r['rating']} | {r['games']} | {r['temperature']:.3f} | {r['bias_scale']:.3f} |"
                    for r in rated
                )
            )
            if rated
            else "no ground truth for this source",
        }
    )
