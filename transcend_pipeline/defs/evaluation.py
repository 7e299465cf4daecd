"""Evaluation assets: the opponent ladder and its baselines, every model's sweep and confirmation, one joint rating
fit, and the transcendence verdict. The procedures live in `transcend_pipeline.ladder` and `.evaluation`."""

from pathlib import Path

import dagster as dg

from transcend_pipeline.defs.partitions import ARMS, EXPERIMENTS, ablation_partitions, experiment_partitions
from transcend_pipeline.defs.resources import DumpSource, EvaluationSettings, TranscendHome
from transcend_pipeline.experiments import Experiment
from transcend_pipeline.settings import find_stockfish


def _rules(config):
    from transcend_pipeline.play import Rules

    return Rules.of_panel(config) if config is not None else Rules.paper()


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
    from transcend_pipeline.evaluation import BASELINE, LADDER
    from transcend_pipeline.ladder import LadderEngines, ladder_players, panel_baselines, panel_ladder, stockfish_ladder
    from transcend_pipeline.play import book_from_games, pairings_against, play_matches, round_robin
    from transcend_pipeline.queries import latest_panel_roster, sampled_bucket_moves
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

    months = dump_source.months
    caps = sorted({experiment.cap for experiment in EXPERIMENTS.values()})
    config = dump_source.panel_config()
    plan = evaluation.ladder_plan()
    with open_warehouse(home.warehouse_path, read_only=True) as connection:
        games = sampled_bucket_moves(
            connection, max(caps), months, seed=evaluation.seed, limit=50 * evaluation.book_openings
        )
        panel_rows = latest_panel_roster(connection, months) if config is not None else []
    book = book_from_games(games, count=evaluation.book_openings, plies=evaluation.book_plies)
    members = panel_ladder(panel_rows, caps, plan) if config is not None else stockfish_ladder(plan)
    scale = config.rating_spread if config is not None else 1.0
    rules = _rules(config)
    with LadderEngines.start(find_stockfish(), size=evaluation.engines, config=config) as engines:
        ladder = ladder_players(members, engines)
        phases = [(LADDER, None, pairing) for pairing in round_robin(ladder, plan.games_per_pair, book_size=len(book))]
        for cap in caps if config is not None else []:
            for baseline in panel_baselines(panel_rows, cap, engines):
                phases += [
                    (BASELINE, cap, pairing)
                    for pairing in pairings_against(baseline, ladder, evaluation.baseline_games, book_size=len(book))
                    if pairing.opponent.name != baseline.name
                ]
        context.log.info(f"{len(ladder)} ladder members; {sum(p.games for _, _, p in phases)} games to play")
        records = play_matches(
            [pairing for _, _, pairing in phases], rules=rules, rng_seed=evaluation.seed, evaluator=engines.q, book=book
        )
    rows = [
        {"phase": phases[record.pairing][0], "cap": phases[record.pairing][1], **record.as_row()} for record in records
    ]
    with open_warehouse(home.warehouse_path) as connection:
        replace_with_rows(
            connection,
            "ladder",
            [{"position": i, "scale": scale, **member.as_row()} for i, member in enumerate(members)],
        )
        replace_with_rows(
            connection,
            "opening_book",
            [{"line": i, "name": o.name, "moves": [m.uci() for m in o.moves]} for i, o in enumerate(book)],
        )
        count = replace_with_rows(connection, "ladder_games", rows)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": count,
            "members": dg.MetadataValue.json({m.name: m.written_rating for m in members}),
            "reference": next(m.name for m in members if m.reference),
            "openings": len(book),
            "rules": str(rules),
        }
    )


def _arm_panel(experiment: Experiment, members: list, config):
    """The panel of a correlated-quirks arm (whose experts are other policies than the bucket's), else None."""
    from transcend_pipeline.ablation import variant_config
    from transcend_pipeline.ladder import bucket_heads
    from transcend_pipeline.panel import Panel

    variant = experiment.variant
    if config is None or variant is None or variant.rho is None:
        return None
    return Panel(variant_config(config, variant, bucket_heads(members, experiment.cap)[0].player_index))


def experiment_bars(experiment: Experiment, members: list, config):
    """Whom the experiment's model is measured against (`ladder.Bars`): see `ladder.panel_bars`."""
    from transcend_pipeline.ladder import Bars, panel_bars

    if config is None:
        return Bars(experiment.cap)
    equal_skill = experiment.variant is not None and experiment.variant.equal_players is not None
    return panel_bars(members, experiment.cap, _arm_panel(experiment, members, config), equal_skill=equal_skill)


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
    from transcend_pipeline.evaluation import BASELINE
    from transcend_pipeline.ladder import LadderEngines, arm_expert_players, bucket_heads, ladder_players
    from transcend_pipeline.play import pairings_against, play_matches
    from transcend_pipeline.queries import ladder_and_book
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows, table_exists

    experiment = ARMS[context.partition_key]
    config = dump_source.panel_config()
    with open_warehouse(home.warehouse_path, read_only=True) as connection:
        members, book, _ = ladder_and_book(connection)
    arm = _arm_panel(experiment, members, config)
    rows = []
    if arm is not None:
        with LadderEngines.start(find_stockfish(), size=evaluation.engines, config=config) as engines:
            ladder = ladder_players(members, engines)
            pairings = [
                pairing
                for baseline in arm_expert_players(arm, bucket_heads(members, experiment.cap), engines)
                for pairing in pairings_against(baseline, ladder, evaluation.baseline_games, book_size=len(book))
            ]
            context.log.info(f"{experiment.arm}: {sum(p.games for p in pairings)} baseline games")
            records = play_matches(
                pairings, rules=_rules(config), rng_seed=evaluation.seed, evaluator=engines.q, book=book
            )
        rows = [
            {"variant": experiment.arm, "phase": BASELINE, "cap": experiment.cap, **record.as_row()}
            for record in records
        ]
    with open_warehouse(home.warehouse_path) as connection:
        if rows:
            replace_with_rows(connection, "arm_baseline_games", rows, partition=("variant", experiment.arm))
        elif table_exists(connection, "arm_baseline_games"):
            connection.execute("DELETE FROM arm_baseline_games WHERE variant = ?", [experiment.arm])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "experts": dg.MetadataValue.json(list(experiment_bars(experiment, members, config).experts)),
            "why": "its own experts, rated against the ladder"
            if rows
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
    from transcend_pipeline.evaluation import CONFIRM, SWEEP, evaluate_model
    from transcend_pipeline.ladder import LadderEngines, ladder_players
    from transcend_pipeline.model import ChessFormer
    from transcend_pipeline.queries import ladder_and_book
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

    experiment = EXPERIMENTS[context.partition_key]
    model = ChessFormer.from_checkpoint(str(home.model_checkpoint(experiment.name))).eval()
    with open_warehouse(home.warehouse_path, read_only=True) as connection:
        members, book, _ = ladder_and_book(connection)
    config = dump_source.panel_config()
    with LadderEngines.start(find_stockfish(), size=evaluation.engines, config=config) as engines:
        result = evaluate_model(
            experiment.name,
            model,
            ladder_players(members, engines),
            book,
            evaluation.plan(),
            rules=_rules(config),
            evaluator=engines.q,
            declared_temperature=experiment.extra.get("confirm_temperature"),
        )
    rows = [
        {
            "experiment": experiment.name,
            "phase": phase,
            "cap": experiment.cap,
            "temperature_choice": choice,
            **record.as_row(),
        }
        for phase, choice, records in ((SWEEP, None, result.sweep), (CONFIRM, result.choice, result.confirm))
        for record in records
    ]
    with open_warehouse(home.warehouse_path) as connection:
        count = replace_with_rows(connection, "evaluation_games", rows, partition=("experiment", experiment.name))
    scores = {}
    for row in rows:
        scores.setdefault(f"{row['phase']} τ={row['temperature']:g}", []).append(row["score"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": count,
            "confirm_temperature": result.temperature,
            "temperature_choice": result.choice,
            "mean_score": dg.MetadataValue.json({cell: round(sum(s) / len(s), 3) for cell, s in scores.items()}),
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
        metadata={"dagster/row_count": count, "games": len(games), "dispersion": fit.dispersion}
    )


@dg.asset(
    deps=["ratings", dg.AssetDep("state_advantage", partition_mapping=dg.AllPartitionMapping())],
    group_name="evaluation",
    kinds={"duckdb", "markdown"},
    description=(
        "For each experiment: does the model transcend? Panel data: model − the bucket's best expert (rated in the "
        "same fit) above 0 with Holm's correction over the run's claims; beside it model − clone(best) and model − "
        "consensus. Lichess data: model − cap. Only confirmatory games enter. Table `transcendence`, the figure "
        "(rating against τ, baselines as bands) and a Markdown report under $TRANSCEND_HOME/reports/."
    ),
)
def transcendence_report(home: TranscendHome, dump_source: DumpSource) -> dg.MaterializeResult:
    from transcend_pipeline.evaluation import (
        fit_games,
        markdown_report,
        method_text,
        plot_transcendence,
        verdict_rows,
        verdict_table,
    )
    from transcend_pipeline.plots import Figure
    from transcend_pipeline.queries import ladder_and_book, rated_games, table_rows
    from transcend_pipeline.state_advantage import (
        ArgmaxComparison,
        GainSummary,
        argmax_comparison_section,
        markdown_section,
    )
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

    config = dump_source.panel_config()
    with open_warehouse(home.warehouse_path) as connection:
        members, book, scale = ladder_and_book(connection)
        games = rated_games(connection)
        rows = table_rows(connection, "ratings")
        per_opponent = table_rows(connection, "ratings_per_opponent")
        fit = fit_games(games, members, scale=scale)
        evaluated = {g["experiment"] for g in games if g.get("experiment")}
        experiments = {
            name: experiment_bars(e, members, config) for name, e in EXPERIMENTS.items() if name in evaluated
        }
        verdicts = verdict_rows(fit, rows, members, experiments, source=dump_source.kind)
        replace_with_rows(connection, "transcendence", verdicts)
        # The tables may keep experiments no longer in the experiment table.
        advantage = [
            GainSummary(**row) for row in table_rows(connection, "state_advantage") if row["experiment"] in EXPERIMENTS
        ]
        comparison = [
            ArgmaxComparison(**row)
            for row in table_rows(connection, "argmax_comparison", order_by="experiment, source")
            if row["experiment"] in EXPERIMENTS
        ]
    reports = home.reports_dir
    reports.mkdir(parents=True, exist_ok=True)
    main = [
        v
        for v in verdicts
        if not EXPERIMENTS[v["experiment"]].variant and v["experiment"] == EXPERIMENTS[v["experiment"]].arm
    ]
    figure = plot_transcendence(rows, main, reports / "transcendence.png")
    figures = {"figure": Figure(figure)}
    sections, ui_sections = [], {}
    if advantage:
        advantage.sort(key=lambda row: (list(EXPERIMENTS).index(row.experiment), row.source, row.temperature))
        analysed = [name for name in EXPERIMENTS if any(row.experiment == name for row in advantage)]
        links = {
            f"{name}: {label}": f"state_advantage/{name}/{file}"
            for name in analysed
            if not EXPERIMENTS[name].variant
            for label, file in ADVANTAGE_FIGURES.items()
        }
        sections.append(markdown_section(advantage, links))
        ui_sections["state_advantage"] = markdown_section(advantage)
    if comparison:
        order = {name: i for i, name in enumerate(EXPERIMENTS)}
        comparison.sort(key=lambda row: (order[row.experiment], row.source))
        sections.append(argmax_comparison_section(comparison))
        ui_sections["argmax_comparison"] = argmax_comparison_section(comparison)
    method = method_text(verdicts, members, scale=scale, rules=_rules(config), book=len(book))
    report = markdown_report(verdicts, rows, per_opponent, method, Path(figure.name), sections)
    (reports / "transcendence.md").write_text(report)
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(reports / "transcendence.md")),
            "verdicts": dg.MetadataValue.md(verdict_table(verdicts) + "\n" + method),
            **{key: dg.MetadataValue.md(value.markdown) for key, value in figures.items()},
            **{key: dg.MetadataValue.md(text) for key, text in ui_sections.items()},
            "transcends": dg.MetadataValue.json({v["experiment"]: v["transcends"] for v in verdicts}),
        }
    )


#: The figures `state_advantage` writes for each experiment, linked from the report.
ADVANTAGE_FIGURES = {
    "gain per position": "gain_histogram.png",
    "where the gain sits": "gain_concentration.png",
    "largest gains": "top_positions.png",
}
