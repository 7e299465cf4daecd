"""Analysis assets: where the low-temperature gain of each experiment's model comes from, position by position."""

import dagster as dg

from transcend_pipeline.defs.evaluation import PAPER_TEMPERATURES, evaluation_games
from transcend_pipeline.defs.resources import TranscendHome
from transcend_pipeline.defs.training import EXPERIMENTS, chessformer, experiment_months, experiment_partitions
from transcend_pipeline.settings import Settings, find_stockfish

#: Overlaid in the figures: the paper's τ → 0, a middle and a mild temperature.
FIGURE_TEMPERATURES = [0.001, 0.1, 0.75]


class StateAdvantageSettings(dg.ConfigurableResource):
    """How much state-level analysis a run affords: positions sampled per source (the model's own games, the
    bucket's held-out games), the Stockfish depth that scores every legal move, the temperatures, the temperatures
    overlaid in the figures, how many largest-gain boards to draw, and the seed of sampling and bootstrap."""

    positions_per_source: int = 300
    depth: int = 8
    temperatures: list[float] = PAPER_TEMPERATURES
    figure_temperatures: list[float] = FIGURE_TEMPERATURES
    top_positions: int = 3
    workers: int = 2
    seed: int = 0

    @classmethod
    def for_profile(cls, profile: str) -> "StateAdvantageSettings":
        if profile == "smoke":
            return cls(positions_per_source=12, depth=1, temperatures=[0.001, 1.0], figure_temperatures=[0.001])
        return cls()


@dg.asset(
    deps=[evaluation_games, chessformer],
    partitions_def=experiment_partitions,
    group_name="analysis",
    kinds={"duckdb", "pytorch"},
    description=(
        "Where the low-temperature gain comes from. Positions from the model's own evaluation games (the model to "
        "move) and from the bucket's held-out games; Stockfish scores every legal move as the mover's win "
        "probability R(a); the model's exact expected reward E_τ = Σ p_τ(a)·R(a) per temperature and the gain "
        "F_τ = E_τ − E_1, with its mean (bootstrap 95% interval), the share of the gain in the top 10% of positions "
        "and top-1 agreement with Stockfish. DuckDB tables `state_advantage` (summary) and "
        "`state_advantage_positions`; figures under $TRANSCEND_HOME/reports/state_advantage/<experiment>/."
    ),
)
def state_advantage(
    context: dg.AssetExecutionContext, home: TranscendHome, advantage: StateAdvantageSettings
) -> dg.MaterializeResult:
    from transcend_pipeline.model import ChessFormer
    from transcend_pipeline.state_advantage import (
        SOURCES,
        analyse_positions,
        load_source_games,
        markdown_section,
        plot_gain_concentration,
        plot_gain_histogram,
        plot_top_positions,
        position_rows,
        sample_positions,
        summary_table,
    )
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

    experiment = EXPERIMENTS[context.partition_key]
    model = ChessFormer.from_checkpoint(str(home.model_checkpoint(experiment.name))).eval()
    with open_warehouse(home.warehouse_path, read_only=True) as connection:
        games = load_source_games(
            connection,
            experiment.name,
            experiment.cap,
            experiment_months(experiment),
            held_out_games=advantage.positions_per_source,
        )
    positions = [
        position
        for source in SOURCES
        for position in sample_positions(games[source], source, advantage.positions_per_source, seed=advantage.seed)
    ]
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
    with open_warehouse(home.warehouse_path) as connection:
        partition = ("experiment", experiment.name)
        count = replace_with_rows(
            connection,
            "state_advantage_positions",
            position_rows(analyses, experiment=experiment.name),
            partition=partition,
        )
        replace_with_rows(connection, "state_advantage", [row.as_row() for row in summaries], partition=partition)

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
    (out_dir / "state_advantage.md").write_text(section)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": count,
            "positions": len(analyses),
            "report": dg.MetadataValue.path(str(out_dir / "state_advantage.md")),
            "summary": dg.MetadataValue.md(markdown_section(summaries)),
            **{label: dg.MetadataValue.md(figure.markdown) for label, figure in figures.items()},
            "mean_gain_lowest_tau": dg.MetadataValue.json(
                {row.source: round(row.mean_gain, 5) for row in summaries if row.temperature == lowest}
            ),
        }
    )


def state_advantage_settings_from_env() -> StateAdvantageSettings:
    return StateAdvantageSettings.for_profile(Settings.from_env().profile)
