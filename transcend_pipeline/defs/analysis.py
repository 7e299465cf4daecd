"""Analysis assets: where the low-temperature gain of each experiment's model comes from, position by position."""

from typing import TYPE_CHECKING

import dagster as dg

from transcend_pipeline.defs.partitions import EXPERIMENTS, experiment_partitions
from transcend_pipeline.defs.resources import DumpSource, EvaluationSettings, StateAdvantageSettings, TranscendHome
from transcend_pipeline.experiments import Experiment
from transcend_pipeline.settings import find_stockfish

if TYPE_CHECKING:
    from transcend_pipeline.model_quality import MoveDistributions
    from transcend_pipeline.panel import PanelConfig
    from transcend_pipeline.state_advantage import ArgmaxComparison


@dg.asset(
    deps=["evaluation_games", "chessformer", dg.AssetDep("panel_players", partition_mapping=dg.AllPartitionMapping())],
    partitions_def=experiment_partitions,
    group_name="analysis",
    kinds={"duckdb", "pytorch"},
    description=(
        "Where the low-temperature gain comes from. Positions from the model's own evaluation games (the model to "
        "move) and from the bucket's held-out games; Stockfish scores every legal move as the mover's win "
        "probability R(a); the model's exact expected reward E_τ = Σ p_τ(a)·R(a) per temperature and the gain "
        "F_τ = E_τ − E_1, with its mean (bootstrap 95% interval), the share of the gain in the top 10% of positions "
        "and top-1 agreement with Stockfish. On panel data also the model's argmax against the bucket's best player's "
        "clone on the same positions (confirmatory games and held-out games): depth-1 Q-regret as the quality bar "
        "measures it, regret and blunder rates under R, and model − clone with game-bootstrap intervals. DuckDB "
        "tables `state_advantage` (summary), `state_advantage_positions` and `argmax_comparison`; figures under "
        "$TRANSCEND_HOME/reports/state_advantage/<experiment>/."
    ),
)
def state_advantage(
    context: dg.AssetExecutionContext,
    home: TranscendHome,
    dump_source: DumpSource,
    advantage: StateAdvantageSettings,
    evaluation: EvaluationSettings,
) -> dg.MaterializeResult:
    from transcend_pipeline.model import ChessFormer
    from transcend_pipeline.state_advantage import (
        ArgmaxModel,
        analyse_positions,
        argmax_comparison_section,
        load_source_games,
        markdown_section,
        plot_gain_concentration,
        plot_gain_histogram,
        plot_top_positions,
        position_rows,
        sample_sources,
        summary_table,
    )
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows, table_exists

    experiment = EXPERIMENTS[context.partition_key]
    months = experiment.data_months(dump_source.months)
    model = ChessFormer.from_checkpoint(str(home.model_checkpoint(experiment.name))).eval()
    with open_warehouse(home.warehouse_path, read_only=True) as connection:
        games = load_source_games(
            connection,
            experiment.name,
            experiment.cap,
            months,
            held_out_games=advantage.positions_per_source,
            variant=experiment.arm if experiment.variant else None,
        )
    positions = sample_sources(games, advantage.positions_per_source, seed=advantage.seed)
    if not positions:
        raise dg.Failure(f"{experiment.name} has no evaluation games and no held-out games to draw positions from")
    context.log.info(f"{len(positions)} positions from {sum(map(len, games.values()))} games, depth {advantage.depth}")
    analyses = analyse_positions(
        model,
        positions,
        find_stockfish(),
        temperatures=advantage.temperatures,
        depth=advantage.depth,
        workers=advantage.workers,
    )
    summaries = summary_table(analyses, experiment=experiment.name, seed=advantage.seed)
    panel = dump_source.panel_config()
    comparison = (
        _compare_argmaxes(
            context, home, experiment, months, ArgmaxModel(model), panel, advantage, evaluation.book_plies
        )
        if panel is not None
        else []
    )
    with open_warehouse(home.warehouse_path) as connection:
        partition = ("experiment", experiment.name)
        count = replace_with_rows(
            connection,
            "state_advantage_positions",
            position_rows(analyses, experiment=experiment.name),
            partition=partition,
        )
        replace_with_rows(connection, "state_advantage", [row.as_row() for row in summaries], partition=partition)
        if comparison:
            replace_with_rows(
                connection, "argmax_comparison", [row.as_row() for row in comparison], partition=partition
            )
        elif table_exists(connection, "argmax_comparison"):  # no stale rows from an earlier run
            connection.execute("DELETE FROM argmax_comparison WHERE experiment = ?", [experiment.name])
    comparison_section = (
        argmax_comparison_section(comparison)
        if comparison
        else "No argmax comparison: it needs the panel's players (panel data) and positions to compare on.\n"
    )

    out_dir = home.reports_dir / "state_advantage" / experiment.name
    lowest = min(advantage.temperatures)
    shown = [t for t in advantage.figure_temperatures if t in advantage.temperatures] or [lowest]
    figures = {
        "gain histogram": plot_gain_histogram(
            analyses, shown, out_dir / "gain_histogram.png", title=f"{experiment.name}: gain per position"
        ),
        "gain concentration": plot_gain_concentration(
            analyses, shown, out_dir / "gain_concentration.png", title=f"{experiment.name}: where the gain sits"
        ),
        "largest gains": plot_top_positions(
            analyses, lowest, out_dir / "top_positions.png", count=advantage.top_positions
        ),
    }
    section = markdown_section(summaries, {label: figure.path.name for label, figure in figures.items()})
    (out_dir / "state_advantage.md").write_text(f"{section}\n{comparison_section}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": count,
            "positions": len(analyses),
            "report": dg.MetadataValue.path(str(out_dir / "state_advantage.md")),
            "summary": dg.MetadataValue.md(markdown_section(summaries)),
            "argmax_comparison": dg.MetadataValue.md(comparison_section),
            **{label: dg.MetadataValue.md(figure.markdown) for label, figure in figures.items()},
            "mean_gain_lowest_tau": dg.MetadataValue.json(
                {row.source: round(row.mean_gain, 5) for row in summaries if row.temperature == lowest}
            ),
        }
    )


def _compare_argmaxes(
    context: dg.AssetExecutionContext,
    home: TranscendHome,
    experiment: Experiment,
    months: list[str],
    model: "MoveDistributions",
    config: "PanelConfig",
    advantage: StateAdvantageSettings,
    book_plies: int,
) -> "list[ArgmaxComparison]":
    """The model's argmax against its data's best expert's clone, the experts' own policies and argmaxes and their
    mixture's argmax (the panel's ground truth), on positions of the model's confirmatory games (its moves after
    the opening book), of its own held-out games and — for a diversity arm — of the cap bucket's held-out games
    (after the panel's random openings, as the quality bar samples them), the same positions for every arm."""
    from transcend_pipeline.evaluation import CONFIRM
    from transcend_pipeline.queries import experiment_panel
    from transcend_pipeline.state_advantage import (
        BUCKET_HELD_OUT,
        HELD_OUT,
        OWN_GAMES,
        Expert,
        argmax_comparison,
        load_source_games,
        sample_sources,
    )
    from transcend_pipeline.warehouse import open_warehouse

    with open_warehouse(home.warehouse_path, read_only=True) as connection:
        games = load_source_games(
            connection,
            experiment.name,
            experiment.cap,
            months,
            held_out_games=advantage.comparison_positions,
            phase=CONFIRM,
            variant=experiment.arm if experiment.variant else None,
        )
        try:
            arm_config, players = experiment_panel(connection, experiment, config, months)
        except ValueError as error:
            context.log.warning(f"{experiment.name}: no expert to compare with ({error})")
            return []
    experts = [Expert(row["player"], int(row["player_index"]), row["share"]) for row in players]
    skip = {OWN_GAMES: book_plies, HELD_OUT: config.opening_plies[1], BUCKET_HELD_OUT: config.opening_plies[1]}
    positions = sample_sources(games, advantage.comparison_positions, seed=advantage.seed, skip_plies=skip)
    if not positions:
        context.log.warning(f"{experiment.name}: no positions for the argmax comparison")
        return []
    return argmax_comparison(
        model,
        positions,
        arm_config,
        experts,
        find_stockfish(),
        experiment=experiment.name,
        depth=advantage.depth,
        workers=advantage.workers,
        seed=advantage.seed,
    )


@dg.asset(
    deps=[
        "transcendence_report",
        dg.AssetDep("state_advantage", partition_mapping=dg.AllPartitionMapping()),
        dg.AssetDep("ablation_games", partition_mapping=dg.AllPartitionMapping()),
    ],
    group_name="analysis",
    kinds={"duckdb", "markdown"},
    description=(
        "Does the low-temperature gain need diverse experts? For every evaluated arm of the diversity study (quirks "
        "correlated by ρ at fixed players; k experts of equal skill) and every training seed: model − clone(best "
        "expert of the arm) in play (Holm-corrected, from the joint fit), the panel's ground truth on held-out "
        "positions — the arm's mixture argmax − clone (the theory's prediction), the model's argmax − clone, and "
        "the paper's condition — on the positions every arm shares and on the arm's own, and the state advantage. "
        "Table `diversity_study`, the dose-response and concentration figures and "
        "$TRANSCEND_HOME/reports/diversity.md. `make run` evaluates a compact comparison; `make study` every arm."
    ),
)
def diversity_report(home: TranscendHome, dump_source: DumpSource) -> dg.MaterializeResult:
    from transcend_pipeline.diversity import COMMON, plot_dose_response, study_arms, study_rows, study_section
    from transcend_pipeline.queries import diversity_row, lowest_temperature_gains, table_rows
    from transcend_pipeline.state_advantage import ArgmaxComparison, GainSummary, plot_concentration_curves
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows, table_exists

    panel = dump_source.panel_config()
    arms = study_arms(EXPERIMENTS, base_rho=panel.rho if panel is not None else 0.0)
    with open_warehouse(home.warehouse_path) as connection:
        tables = {table: table_exists(connection, table) for table in TABLES_READ}
        if not all(tables.values()):
            missing = [table for table, present in tables.items() if not present]
            return dg.MaterializeResult(metadata={"arms": 0, "why": f"nothing to compare yet: no {missing}"})
        verdicts = table_rows(connection, "transcendence")
        comparisons = [ArgmaxComparison(**row) for row in table_rows(connection, "argmax_comparison")]
        advantages = [GainSummary(**row) for row in table_rows(connection, "state_advantage")]
        rows = study_rows(arms, verdicts, comparisons, advantages)
        if not rows:
            return dg.MaterializeResult(metadata={"arms": 0, "why": "no arm of the study has been evaluated yet"})
        replace_with_rows(connection, "diversity_study", rows)
        evaluated = {row["experiment"] for row in rows}
        first_seeds = [arm for arm in arms if arm.experiment in evaluated and arm.experiment == arm.arm]
        diversity = {
            arm.label if arm.variant else f"{arm.arm} (full bucket)": diversity_row(
                connection, EXPERIMENTS[arm.experiment]
            )
            for arm in first_seeds
        }
        curves = {
            f"{arm.arm} ({arm.label})": lowest_temperature_gains(connection, arm.experiment, arm.sources[COMMON])
            for arm in first_seeds
        }
    out_dir = home.reports_dir / "diversity"
    figures = {
        "gain against diversity": plot_dose_response(rows, out_dir / "dose_response.png"),
        "where the gain sits, every arm": plot_concentration_curves(
            curves, out_dir / "concentration.png", title="every arm, common positions, lowest τ (seed 0)"
        ),
    }
    report = study_section(rows, diversity, {label: f"diversity/{f.path.name}" for label, f in figures.items()})
    (home.reports_dir / "diversity.md").write_text(report)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "arms": len({row["arm"] for row in rows}),
            "report": dg.MetadataValue.path(str(home.reports_dir / "diversity.md")),
            "study": dg.MetadataValue.md(study_section(rows, diversity, {})),
            **{label: dg.MetadataValue.md(figure.markdown) for label, figure in figures.items()},
        }
    )


#: What the diversity study reads: the verdicts, the ground truth and the state advantage.
TABLES_READ = ("transcendence", "argmax_comparison", "state_advantage", "state_advantage_positions")
