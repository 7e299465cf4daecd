"""Evaluation assets: the opponent ladder and its baselines, every model's sweep and confirmation, one joint rating
fit, and the transcendence verdict. The procedures live in `transcend_pipeline.ladder` and `.evaluation`."""

import dagster as dg

from transcend_pipeline.defs.partitions import ARMS, EXPERIMENTS, ablation_partitions, experiment_partitions
from transcend_pipeline.defs.resources import DumpSource, EvaluationSettings, TranscendHome
from transcend_pipeline.settings import find_stockfish


@dg.asset(
    deps=[
        dg.AssetDep("panel_players", partition_mapping=dg.AllPartitionMapping()),
        dg.AssetDep("stg_games", partition_mapping=dg.AllPartitionMapping()),
        "bucket_games",
    ],
    group_name="evaluation",
    kinds={"duckdb"},
    pool="warehouse",
    description=(
        "The ladder every rated player meets: panel players from below the lowest cap to the strongest (each "
        "bucket's top players included) and node-limited Stockfish — or, on Lichess data, Stockfish's skill levels "
        "with the paper's anchors — calibrated by a round robin among themselves; the fixed opening book sampled "
        "from the bucket's games; and, per cap, the baselines (the bucket's best player, its clone, the oracle "
        "consensus) against the ladder. DuckDB tables `ladder`, `opening_book` and `ladder_games`."
    ),
)
def opponent_ladder(
    context: dg.AssetExecutionContext, home: TranscendHome, dump_source: DumpSource, evaluation: EvaluationSettings
) -> dg.MaterializeResult:
    from transcend_pipeline.evaluation import build_ladder

    ladder = build_ladder(
        home.warehouse_path,
        {experiment.cap for experiment in EXPERIMENTS.values()},
        dump_source.months,
        evaluation.ladder(),
        panel=dump_source.panel_config(),
        stockfish=find_stockfish(),
        log=context.log.info,
        lake=home.lake,
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": ladder.games,
            "members": dg.MetadataValue.json({m.name: m.written_rating for m in ladder.members}),
            "reference": next(m.name for m in ladder.members if m.reference),
            "openings": len(ladder.book),
            "rules": str(ladder.rules),
        }
    )


@dg.asset(
    deps=["opponent_ladder"],
    partitions_def=ablation_partitions,
    group_name="ablation",
    kinds={"duckdb"},
    pool="warehouse",
    description=(
        "A correlated-quirks arm's own experts against the ladder: the bucket heads' counterparts in the arm's panel "
        "(the same players, other quirks) and the best one's clone, rated in the same fit as everyone, so the arm's "
        "model is measured against its own best expert and clone. Equal-skill arms need none (their best expert is "
        "the bucket's best player). DuckDB table `arm_baseline_games`, one partition per arm (column `variant`)."
    ),
)
def arm_baselines(
    context: dg.AssetExecutionContext, home: TranscendHome, dump_source: DumpSource, evaluation: EvaluationSettings
) -> dg.MaterializeResult:
    from transcend_pipeline.evaluation import play_arm_baselines

    games, bars = play_arm_baselines(
        home.warehouse_path,
        ARMS[context.partition_key],
        evaluation.ladder(),
        panel=dump_source.panel_config(),
        stockfish=find_stockfish(),
        log=context.log.info,
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": games,
            "experts": dg.MetadataValue.json(list(bars.experts)),
            "why": "its own experts, rated against the ladder"
            if games
            else "none needed: the arm's best expert is the bucket's best player, rated by opponent_ladder",
        }
    )


@dg.asset(
    deps=["chessformer", "opponent_ladder"],
    partitions_def=experiment_partitions,
    group_name="evaluation",
    kinds={"duckdb", "pytorch"},
    description=(
        "The experiment's model against the whole ladder, from the same book and colours as every other rated "
        "player: a sweep over temperatures, then fresh confirmatory games (another seed) at the temperature the "
        "sweep scored best at — or only the confirmatory games at the temperature the experiment declares "
        "(`confirm_temperature`). One row per game in the DuckDB "
        "table `evaluation_games` (phase 'sweep' or 'confirm'), with its PGN."
    ),
)
def evaluation_games(
    context: dg.AssetExecutionContext, home: TranscendHome, dump_source: DumpSource, evaluation: EvaluationSettings
) -> dg.MaterializeResult:
    from transcend_pipeline.evaluation import play_experiment

    experiment = EXPERIMENTS[context.partition_key]
    result = play_experiment(
        home.warehouse_path,
        experiment,
        home.model_checkpoint(experiment.name),
        evaluation.plan(),
        panel=dump_source.panel_config(),
        stockfish=find_stockfish(),
        engines=evaluation.engines,
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(result.sweep) + len(result.confirm),
            "confirm_temperature": result.temperature,
            "temperature_choice": result.choice,
            "mean_score": dg.MetadataValue.json(result.mean_scores()),
        }
    )


@dg.asset(
    deps=[
        dg.AssetDep("evaluation_games", partition_mapping=dg.AllPartitionMapping()),
        dg.AssetDep("arm_baselines", partition_mapping=dg.AllPartitionMapping()),
        "opponent_ladder",
    ],
    group_name="evaluation",
    kinds={"duckdb"},
    pool="warehouse",
    description=(
        "One Bradley–Terry fit of every game of the run — the ladder's round robin, the baselines, every model at "
        "every temperature — on one scale (the dump's written Elo on panel data, fixed by one ladder member; the "
        "paper's Stockfish anchor on Lichess data), with 95% profile-likelihood intervals and W/D/L. DuckDB tables "
        "`ratings` and `ratings_per_opponent`."
    ),
)
def ratings(home: TranscendHome) -> dg.MaterializeResult:
    from transcend_pipeline.evaluation import fit_games, per_opponent_rows, ratings_rows
    from transcend_pipeline.queries import ladder_and_book, rated_games
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

    with open_warehouse(home.warehouse_path) as connection:
        members, _, scale = ladder_and_book(connection)
        games = rated_games(connection)
        fit = fit_games(games, members, scale=scale)
        count = replace_with_rows(connection, "ratings", ratings_rows(fit, games, members))
        replace_with_rows(connection, "ratings_per_opponent", per_opponent_rows(games))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": count,
            "games": len(games),
            "dispersion": fit.dispersion,
            "reference": fit.reference,
        }
    )


@dg.asset(
    deps=["ratings", dg.AssetDep("state_advantage", partition_mapping=dg.AllPartitionMapping())],
    group_name="evaluation",
    kinds={"duckdb", "markdown"},
    description=(
        "For each experiment: does the model transcend? Panel data: model − the bucket's best expert (rated in the "
        "same fit) above 0 with Holm's correction over the run's claims; beside it model − clone(best) and model − "
        "consensus. Lichess data: model − cap. Only confirmatory games enter. Table `transcendence`, the figure "
        "(rating against τ, baselines as bands) and a Markdown report under $TRANSCEND_HOME/reports/. The diversity "
        "study's claims between arms of a dial (an arm's gain over its clone minus the least diverse arm's) are "
        "claims of the same family: table `diversity_contrasts`."
    ),
)
def transcendence_report(home: TranscendHome, dump_source: DumpSource) -> dg.MaterializeResult:
    from transcend_pipeline.evaluation import verdict_table, write_report
    from transcend_pipeline.plots import Figure

    report = write_report(home.warehouse_path, EXPERIMENTS, dump_source.panel_config(), home.reports_dir)
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(report.path)),
            "verdicts": dg.MetadataValue.md(verdict_table(report.verdicts) + "\n" + report.method),
            "figure": dg.MetadataValue.md(Figure(report.figure).markdown),
            **{key: dg.MetadataValue.md(text) for key, text in report.sections.items()},
            "transcends": dg.MetadataValue.json({v["experiment"]: v["transcends"] for v in report.verdicts}),
        }
    )
