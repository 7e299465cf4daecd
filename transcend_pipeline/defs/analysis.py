"""Analysis assets: where the low-temperature gain of each experiment's model comes from, position by position."""

import dagster as dg

from transcend_pipeline.defs.partitions import EXPERIMENTS, experiment_partitions
from transcend_pipeline.defs.resources import DumpSource, EvaluationSettings, StateAdvantageSettings, TranscendHome
from transcend_pipeline.settings import find_stockfish


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
    from transcend_pipeline.state_advantage import analyse_experiment, markdown_section

    experiment = EXPERIMENTS[context.partition_key]
    plan = advantage.plan(evaluation.book_plies)
    try:
        result = analyse_experiment(
            home.warehouse_path,
            experiment,
            experiment.data_months(dump_source.months),
            home.model_checkpoint(experiment.name),
            plan,
            panel=dump_source.panel_config(),
            stockfish=find_stockfish(),
            out_dir=home.reports_dir / "state_advantage" / experiment.name,
            log=context.log.info,
            lake=home.lake,
        )
    except ValueError as error:  # no positions to analyse
        raise dg.Failure(str(error)) from error
    lowest = min(plan.temperatures)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.positions * len(plan.temperatures),
            "positions": result.positions,
            "report": dg.MetadataValue.path(str(result.report)),
            "summary": dg.MetadataValue.md(markdown_section(result.summaries)),
            "argmax_comparison": dg.MetadataValue.md(result.comparison_section),
            **{label: dg.MetadataValue.md(figure.markdown) for label, figure in result.figures.items()},
            "mean_gain_lowest_tau": dg.MetadataValue.json(
                {row.source: round(row.mean_gain, 5) for row in result.summaries if row.temperature == lowest}
            ),
        }
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
        "the paper's condition — on the positions every arm shares and on the arm's own, and the state advantage; "
        "and the claims between arms (table `diversity_contrasts`: each arm's gain over its clone, mean over seeds, "
        "minus the dial's least diverse arm's, Holm-corrected with every claim of the run). "
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
        contrasts = (
            table_rows(connection, "diversity_contrasts") if table_exists(connection, "diversity_contrasts") else []
        )
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
    report = study_section(
        rows, diversity, {label: f"diversity/{f.path.name}" for label, f in figures.items()}, contrasts
    )
    (home.reports_dir / "diversity.md").write_text(report)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "arms": len({row["arm"] for row in rows}),
            "report": dg.MetadataValue.path(str(home.reports_dir / "diversity.md")),
            "claims_between_arms": len(contrasts),
            "study": dg.MetadataValue.md(study_section(rows, diversity, {}, contrasts)),
            **{label: dg.MetadataValue.md(figure.markdown) for label, figure in figures.items()},
        }
    )


#: What the diversity study reads: the verdicts, the ground truth and the state advantage.
TABLES_READ = ("transcendence", "argmax_comparison", "state_advantage", "state_advantage_positions")
