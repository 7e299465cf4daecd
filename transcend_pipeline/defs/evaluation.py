"""Evaluation assets: every model's games across temperatures, pooled ratings, and the transcendence verdict."""

from pathlib import Path

import dagster as dg

from transcend_pipeline.defs.ablation import bucket_diversity_row
from transcend_pipeline.defs.resources import DumpSource, PanelSource, TranscendHome
from transcend_pipeline.defs.training import (
    EXPERIMENTS,
    bucket_panel_players,
    chessformer,
    experiment_months,
    experiment_partitions,
)
from transcend_pipeline.settings import Settings, find_stockfish

PAPER_TEMPERATURES = [0.001, 0.01, 0.1, 0.3, 0.5, 0.75, 1.0, 1.5]


class EvaluationSettings(dg.ConfigurableResource):
    """How much evaluation a run affords: the paper's temperatures, and games per (model, temperature) cell.

    Panel-trained experiments play the panel players rated nearest their cap (`opponents` of them); Lichess-trained
    ones play Stockfish levels with the paper's anchors. Games are cut at `max_plies`; a side resigns after
    `resign_plies` moves below −`resign_cp`, and games still running at the cap are adjudicated beyond
    ±`adjudicate_cp` (the remedy for argmax-vs-argmax repetition, recorded in every game row).
    """

    temperatures: list[float] = PAPER_TEMPERATURES
    games_per_cell: int = 24
    opponents: int = 4
    max_plies: int = 200
    resign_cp: int = 800
    resign_plies: int = 6
    adjudicate_cp: int = 300
    seed: int = 0

    @classmethod
    def for_profile(cls, profile: str) -> "EvaluationSettings":
        return cls(temperatures=[0.001, 1.0], games_per_cell=4, opponents=2) if profile == "smoke" else cls()


def _latest_panel_rows(connection, months: list[str]) -> list[dict]:
    """The panel's ground truth for the experiment's last month: the ratings opponents are anchored to."""
    rows = connection.execute(
        "SELECT * FROM panel_players WHERE month = (SELECT max(month) FROM panel_players WHERE list_contains(?, month))",
        [months],
    ).fetch_arrow_table()
    return rows.to_pylist()


@dg.asset(
    deps=[chessformer, dg.AssetDep("panel_players", partition_mapping=dg.AllPartitionMapping())],
    partitions_def=experiment_partitions,
    group_name="evaluation",
    kinds={"duckdb", "pytorch"},
    description=(
        "The experiment's model playing at every temperature against fixed-rating opponents — panel players rated "
        "around its cap (panel data) or Stockfish levels 1/3/5 (Lichess data) — plus the bucket's baselines "
        "(best player, its clone, the oracle consensus), many games in flight with batched model calls. One row "
        "per game in the DuckDB table `evaluation_games`, with its PGN."
    ),
)
def evaluation_games(
    context: dg.AssetExecutionContext,
    home: TranscendHome,
    dump_source: DumpSource,
    evaluation: EvaluationSettings,
) -> dg.MaterializeResult:
    from transcend_pipeline.model import ChessFormer
    from transcend_pipeline.opponents import (
        EnginePool,
        PooledQ,
        SkillEngine,
        opponents_around,
        panel_baselines,
        panel_opponents,
        stockfish_opponents,
    )
    from transcend_pipeline.panel import PanelConfig
    from transcend_pipeline.play import Pairing, Rules, play_matches, temperature_pairings
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

    experiment = EXPERIMENTS[context.partition_key]
    model = ChessFormer.from_checkpoint(str(home.model_checkpoint(experiment.name))).eval()
    stockfish = find_stockfish()
    rules = Rules(
        max_plies=evaluation.max_plies,
        resign_cp=evaluation.resign_cp,
        resign_plies=evaluation.resign_plies,
        adjudicate_cp=evaluation.adjudicate_cp,
    )
    if isinstance(dump_source, PanelSource):
        config = PanelConfig.for_profile(dump_source.profile)
        with open_warehouse(home.warehouse_path, read_only=True) as connection:
            rows = _latest_panel_rows(connection, experiment_months(experiment))
            bucket_rows = bucket_panel_players(connection, experiment)
        with EnginePool.start(PooledQ.engine_factory(config, stockfish), size=2) as pool:
            q = PooledQ(pool)
            opponents = opponents_around(panel_opponents(config, rows, q), experiment.cap, evaluation.opponents)
            pairings = temperature_pairings(
                experiment.name, model, evaluation.temperatures, opponents, evaluation.games_per_cell
            )
            per_opponent = pairings[0].games
            for baseline in panel_baselines(config, bucket_rows, q, experiment.cap):
                pairings += [
                    Pairing(baseline, opponent, per_opponent)
                    for opponent in opponents
                    if opponent.name != baseline.name
                ]
            context.log.info(
                f"{len(pairings)} pairings, {sum(p.games for p in pairings)} games vs {len(opponents)} panel players"
            )
            records = play_matches(pairings, rules=rules, rng_seed=evaluation.seed, evaluator=q)
    else:
        rules = Rules.paper()  # the paper's protocol: cut at move 90 as a draw, no engine evaluation
        with EnginePool.start(lambda: SkillEngine(stockfish), size=2) as pool:
            opponents = stockfish_opponents(pool)
            pairings = temperature_pairings(
                experiment.name, model, evaluation.temperatures, opponents, evaluation.games_per_cell
            )
            records = play_matches(pairings, rules=rules, rng_seed=evaluation.seed)

    rows = [{"experiment": experiment.name, **record.as_row()} for record in records]
    with open_warehouse(home.warehouse_path) as connection:
        count = replace_with_rows(connection, "evaluation_games", rows, partition=("experiment", experiment.name))
    terminations: dict[str, int] = {}
    for record in records:
        terminations[record.termination] = terminations.get(record.termination, 0) + 1
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": count,
            "opponents": dg.MetadataValue.json({o.name: o.rating for o in opponents}),
            "terminations": dg.MetadataValue.json(terminations),
            "remedy": rules.remedy,
        }
    )


@dg.asset(
    deps=[dg.AssetDep(evaluation_games, partition_mapping=dg.AllPartitionMapping())],
    group_name="evaluation",
    kinds={"duckdb"},
    pool="warehouse",
    description=(
        "Per experiment and temperature, a pooled Bradley–Terry rating over all its games against fixed-rating "
        "opponents with a 95% interval, wins/draws/losses and repetition draws; the same for the baselines "
        "(the bucket's best player, its clone and the oracle consensus), on one scale. DuckDB table `ratings`."
    ),
)
def ratings(home: TranscendHome) -> dg.MaterializeResult:
    from transcend_pipeline.evaluation import ratings_table
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

    with open_warehouse(home.warehouse_path) as connection:
        games = connection.execute("SELECT * FROM evaluation_games").fetch_arrow_table().to_pylist()
        rows = []
        for name in sorted({game["experiment"] for game in games}):
            rows += ratings_table([game for game in games if game["experiment"] == name], experiment=name)
        count = replace_with_rows(connection, "ratings", rows)
    return dg.MaterializeResult(metadata={"dagster/row_count": count})


@dg.asset(
    deps=[ratings, dg.AssetDep("state_advantage", partition_mapping=dg.AllPartitionMapping())],
    group_name="evaluation",
    kinds={"duckdb", "markdown"},
    description=(
        "For each experiment: does the model transcend? It does when its best temperature's 95% interval lies above "
        "the cap and, on panel data, above the bucket's best player. The paper-style figure (rating against "
        "temperature per cap, cap and best player dashed, interval as a band) and a Markdown report under "
        "$TRANSCEND_HOME/reports/, rendered here too."
    ),
)
def transcendence_report(home: TranscendHome) -> dg.MaterializeResult:
    from transcend_pipeline.evaluation import diversity_section, markdown_report, plot_transcendence, verdict
    from transcend_pipeline.plots import Figure
    from transcend_pipeline.state_advantage import GainSummary, markdown_section
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows, table_exists

    with open_warehouse(home.warehouse_path) as connection:
        rows = connection.execute("SELECT * FROM ratings").fetch_arrow_table().to_pylist()
        verdicts = []
        for name in sorted({row["experiment"] for row in rows}, key=list(EXPERIMENTS).index):
            mine = [row for row in rows if row["experiment"] == name]
            best_player = [row for row in mine if row["kind"] == "best_player"]
            best_rating = _best_player_rating(connection, best_player[0]["player"]) if best_player else None
            verdicts.append(verdict(mine, cap=EXPERIMENTS[name].cap, best_player_rating=best_rating))
        replace_with_rows(connection, "transcendence", [v.as_row() for v in verdicts])
        diversity = {v.experiment: bucket_diversity_row(connection, EXPERIMENTS[v.experiment]) for v in verdicts}
        advantage = (
            [
                GainSummary(**row)
                for row in connection.execute("SELECT * FROM state_advantage").fetch_arrow_table().to_pylist()
            ]
            if table_exists(connection, "state_advantage")
            else []
        )
    reports = home.reports_dir
    reports.mkdir(parents=True, exist_ok=True)
    main = [v for v in verdicts if not EXPERIMENTS[v.experiment].variant]
    figure = plot_transcendence(rows, main, reports / "transcendence.png")
    figures = {"figure": Figure(figure)}
    sections, ui_sections = [], {}
    ablated_caps = {EXPERIMENTS[v.experiment].cap for v in verdicts if EXPERIMENTS[v.experiment].variant}
    if ablated_caps:
        compared = [v for v in verdicts if EXPERIMENTS[v.experiment].cap in ablated_caps]
        ablation_figure = plot_transcendence(rows, compared, reports / "diversity_ablation.png")
        figures["ablation_figure"] = Figure(ablation_figure)
        buckets = {
            v.experiment: EXPERIMENTS[v.experiment].variant.label
            if EXPERIMENTS[v.experiment].variant
            else "full bucket"
            for v in compared
        }
        sections.append(diversity_section(compared, rows, diversity, buckets, Path(ablation_figure.name)))
        ui_sections["diversity_ablation"] = diversity_section(compared, rows, diversity, buckets)
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
    (reports / "transcendence.md").write_text(markdown_report(main, rows, Path(figure.name), sections))
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(reports / "transcendence.md")),
            "verdicts": dg.MetadataValue.md(markdown_report(main, rows)),
            **{key: dg.MetadataValue.md(value.markdown) for key, value in figures.items()},
            **{key: dg.MetadataValue.md(text) for key, text in ui_sections.items()},
            "transcends": dg.MetadataValue.json({v.experiment: v.transcends for v in verdicts}),
        }
    )


#: The figures `state_advantage` writes for each experiment, linked from the report.
ADVANTAGE_FIGURES = {
    "gain per position": "gain_histogram.png",
    "where the gain sits": "gain_concentration.png",
    "largest gains": "top_positions.png",
}


def _best_player_rating(connection, player: str) -> float | None:
    """The bucket's best player's rating as written in the dump (its fixed rating in the evaluation)."""
    row = connection.execute(
        "SELECT rating FROM panel_players WHERE player = ? ORDER BY month DESC LIMIT 1", [player]
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def evaluation_settings_from_env() -> EvaluationSettings:
    return EvaluationSettings.for_profile(Settings.from_env().profile)
