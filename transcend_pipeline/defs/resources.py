"""Dagster resources: thin, typed wrappers around `transcend_pipeline.settings`, the domain sources and how much
work a run affords (the settings of training, evaluation and state analysis, by profile).

Resource values are read from the environment when the definitions load, so the
Dagster UI's resource page shows the configuration a run will use. Heavy domain
modules are imported inside methods, keeping `dagster definitions validate` fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from transcend_pipeline.settings import (
    DEFAULT_LICHESS_URL,
    DEFAULT_PANEL_MONTHS,
    PAPER_TEMPERATURES,
    Settings,
    default_months,
    find_stockfish,
    lake_location,
    last_complete_month,
    profile_overrides,
    warehouse_kind,
)
from transcend_pipeline.sql_models import PROJECT_ROOT, load_vars

#: The concurrency pool of a step that writes one month. A DuckDB file admits one writing process, so such steps queue
#: in the pool `warehouse` (limit 1, the instance's dagster.yaml) with every other writer of the file. On the lake a
#: month is its own Delta commit, so months are written at once on as many workers as the executor has.
MONTH_WRITER_POOL: str | None = None if warehouse_kind() == "lake" else "warehouse"

if TYPE_CHECKING:
    from transcend_pipeline.panel import PanelConfig

DBT_TARGET_VARIABLE = "TRANSCEND_DBT_TARGET"


class TranscendHome(dg.ConfigurableResource):
    """The data directory ($TRANSCEND_HOME): raw dumps, the DuckDB warehouse, checkpoints and reports; and the lake
    that holds the monthly tables when $TRANSCEND_WAREHOUSE is `lake` (`lake_path`, empty otherwise)."""

    path: str
    lake_path: str = ""

    @property
    def lake(self) -> Path | str | None:
        return lake_location(self.lake_path) if self.lake_path else None

    @property
    def root(self) -> Path:
        return Path(self.path)

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def staging_dir(self) -> Path:
        return self.root / "staging"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def training_set_dir(self, experiment: str) -> Path:
        return self.root / "training_sets" / experiment

    def checkpoint_dir(self, experiment: str) -> Path:
        """Where an experiment's checkpoints live: `last.ckpt` (resume) and `best.ckpt` (the trained model)."""
        return self.root / "checkpoints" / experiment

    def model_checkpoint(self, experiment: str) -> Path:
        """The model every asset after training loads: the weights at the lowest validation loss."""
        return self.checkpoint_dir(experiment) / "best.ckpt"


@dataclass(frozen=True)
class FetchedDump:
    """What a source hands to the `raw_dump` asset, whichever source it is."""

    path: Path
    bytes: int
    sha256: str
    origin: str
    seconds: float
    created: bool


class DumpSource(dg.ConfigurableResource):
    """Where monthly dumps come from, and the months a run reads (`months`: the data window of every experiment
    that names none; $TRANSCEND_MONTHS or the source's default, read when the definitions load) and the processes
    that play panel games (`workers`: the dump's, and a diversity arm's). Downstream assets cannot tell the sources
    apart."""

    months: list[str]
    workers: int = 2

    @property
    def label(self) -> str:
        """The folder under raw/ for this source, so dumps of different sources never mix."""
        raise NotImplementedError

    def fetch(self, month: str, dest_dir: Path, log: dg.DagsterLogManager) -> FetchedDump:
        raise NotImplementedError

    def ground_truth(self, month: str, dump_path: Path) -> list[dict]:
        """The true parameters of the players behind a dump, where the source knows them (the panel does)."""
        return []

    def panel_config(self) -> PanelConfig | None:
        """The panel whose players wrote this source's games, or None: real players' policies are unknown."""
        return None

    @property
    def kind(self) -> str:
        """'panel' or 'lichess': which of the report's verdicts applies."""
        return "lichess" if self.panel_config() is None else "panel"

    @property
    def dbt_target(self) -> str:
        """$TRANSCEND_DBT_TARGET, else the source's raw/ folder label: a run on an excerpt of a real month asks for
        `sample` while its dumps stay in raw/lichess/. Read when a step runs, and shown in the metadata of every SQL
        model and gate, since no resource carries it."""
        return os.environ.get(DBT_TARGET_VARIABLE, "").strip() or self.label

    def sql_vars(self) -> dict:
        """The SQL vars for the active target: dbt_project.yml's `vars:` with its `targets:` entry applied."""
        return load_vars(PROJECT_ROOT, target=self.dbt_target)


class LichessSource(DumpSource):
    """The Lichess open database ($TRANSCEND_LICHESS_URL): streamed, resumable, checksum-verified downloads."""

    base_url: str = DEFAULT_LICHESS_URL
    months: list[str] = Field(default_factory=lambda: [last_complete_month()])

    @property
    def label(self) -> str:
        return "lichess"

    def fetch(self, month: str, dest_dir: Path, log: dg.DagsterLogManager) -> FetchedDump:
        from transcend_pipeline.lichess import MonthNotPublishedError, fetch_month

        def progress(done: int, total: int | None, seconds: float) -> None:
            share = f" of {total / 1e6:,.1f} MB ({100 * done / total:.0f}%)" if total else ""
            log.info(f"{month}: {done / 1e6:,.1f} MB{share} at {done / 1e6 / max(seconds, 1e-9):,.1f} MB/s")

        try:
            result = fetch_month(month, self.base_url, dest_dir, progress=progress)
        except MonthNotPublishedError as error:  # waiting minutes and retrying will not publish it
            raise dg.Failure(str(error), allow_retries=False) from error
        return FetchedDump(result.path, result.bytes, result.sha256, result.url, result.seconds, result.downloaded)


class PanelSource(DumpSource):
    """The embedded default: a synthetic panel of diverse, imperfect players writing Lichess-format dumps."""

    profile: str = "demo"
    stockfish_path: str = ""
    months: list[str] = Field(default_factory=lambda: list(DEFAULT_PANEL_MONTHS))

    @property
    def label(self) -> str:
        return f"panel-{self.profile}"

    def fetch(self, month: str, dest_dir: Path, log: dg.DagsterLogManager) -> FetchedDump:
        from transcend_pipeline.lichess import dump_filename, sha256_file
        from transcend_pipeline.panel import write_month_dump

        target = dest_dir / dump_filename(month)
        if target.exists():  # dumps are deterministic per (profile, month): an existing one is the same file
            return FetchedDump(target, target.stat().st_size, sha256_file(target), f"panel:{self.profile}", 0.0, False)

        last_logged = [-1e9]

        def progress(games: int, seconds: float) -> None:
            if seconds - last_logged[0] >= 10:  # a line every ten seconds, not one per chunk of games
                last_logged[0] = seconds
                log.info(f"{month}: {games:,} panel games at {games / max(seconds, 1e-9):,.1f} games/s")

        result = write_month_dump(
            self.panel_config(),
            month,
            dest_dir,
            stockfish_path=find_stockfish(self.stockfish_path or None),
            workers=self.workers,
            progress=progress,
        )
        return FetchedDump(
            result.path, result.path.stat().st_size, result.sha256, f"panel:{self.profile}", result.seconds, True
        )

    def ground_truth(self, month: str, dump_path: Path) -> list[dict]:
        from transcend_pipeline.panel import panel_players

        return panel_players(self.panel_config(), month, dump_path)

    def panel_config(self) -> PanelConfig:
        from transcend_pipeline.panel import PanelConfig

        return PanelConfig.for_profile(self.profile)


DEMO_TEMPERATURES = [0.001, 0.01, 0.1, 0.3, 1.0]
PANEL_STOCKFISH_NODES = [100, 1000]  # full strength, node-limited: deterministic
PAPER_STOCKFISH_LEVELS = [1, 3, 5]


#: Overlaid in the figures: the paper's τ → 0, a middle and a mild temperature.
FIGURE_TEMPERATURES = [0.001, 0.1, 0.75]


class TrainingSettings(dg.ConfigurableResource):
    """How training runs: the profile's budgets, and the devices Lightning spreads it over.

    From the environment: TRANSCEND_PROFILE, TRANSCEND_DEVICES ('auto', or a count),
    TRANSCEND_STRATEGY ('auto', 'ddp'), TRANSCEND_NUM_NODES.
    """

    profile: str = "demo"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1

    @classmethod
    def from_env(cls) -> TrainingSettings:
        return cls(
            profile=Settings.from_env().profile,
            devices=os.environ.get("TRANSCEND_DEVICES", "auto"),
            strategy=os.environ.get("TRANSCEND_STRATEGY", "auto"),
            num_nodes=int(os.environ.get("TRANSCEND_NUM_NODES", "1")),
        )


class EvaluationSettings(dg.ConfigurableResource):
    """How much evaluation a run affords, and the ladder every rated player meets (see the README's power figures).

    `sweep_games` per temperature, `confirm_games` at the temperature taken forward, `baseline_games` for each of the
    bucket's best player, its clone and the consensus; the ladder: `ladder_members` panel players from
    `ladder_below_cap` under the lowest cap to the strongest, each bucket's `bucket_top` players, full-strength
    Stockfish at `stockfish_nodes` (panel data) or skill `stockfish_levels` at `level_nodes` (Lichess data), in a
    round robin of `games_per_pair`; the book: `book_openings` lines of `book_plies` plies from the bucket's games.
    """

    sweep_temperatures: list[float] = DEMO_TEMPERATURES
    sweep_games: int = 100
    confirm_games: int = 400
    baseline_games: int = 400
    ladder_members: int = 10
    ladder_below_cap: float = 300.0
    bucket_top: int = 2
    stockfish_nodes: list[int] = PANEL_STOCKFISH_NODES
    stockfish_levels: list[int] = PAPER_STOCKFISH_LEVELS
    level_nodes: int = 20_000
    games_per_pair: int = 4
    book_openings: int = 50
    book_plies: int = 8
    engines: int = 2
    seed: int = 0

    @classmethod
    def for_profile(cls, profile: str, engines: int = 2) -> EvaluationSettings:
        return cls(**profile_overrides(profile, "evaluation"), engines=engines)

    def plan(self):
        from transcend_pipeline.evaluation import EvaluationPlan

        return EvaluationPlan(
            tuple(self.sweep_temperatures), self.sweep_games, self.confirm_games, self.baseline_games, self.seed
        )

    def ladder_plan(self):
        from transcend_pipeline.ladder import LadderPlan

        return LadderPlan(
            self.ladder_below_cap,
            self.ladder_members,
            self.bucket_top,
            tuple(self.stockfish_nodes),
            tuple(self.stockfish_levels),
            self.level_nodes,
            self.games_per_pair,
        )

    def ladder(self):
        """How the ladder and the baselines are built and played."""
        from transcend_pipeline.evaluation import LadderSettings

        return LadderSettings(
            self.ladder_plan(), self.book_openings, self.book_plies, self.baseline_games, self.engines, self.seed
        )


class StateAdvantageSettings(dg.ConfigurableResource):
    """How much state-level analysis a run affords: positions sampled per source (the model's own games, the
    bucket's held-out games), the Stockfish depth that scores every legal move, the temperatures, the temperatures
    overlaid in the figures, how many largest-gain boards to draw, and the seed of sampling and bootstrap; and the
    positions per source on which the model's argmax is compared with the best player's clone (panel data only)."""

    positions_per_source: int = 300
    comparison_positions: int = 300
    depth: int = 8
    temperatures: list[float] = Field(default_factory=lambda: list(PAPER_TEMPERATURES))
    figure_temperatures: list[float] = FIGURE_TEMPERATURES
    top_positions: int = 3
    workers: int = 2
    seed: int = 0

    @classmethod
    def for_profile(cls, profile: str) -> StateAdvantageSettings:
        return cls(**profile_overrides(profile, "state_advantage"))

    def plan(self, book_plies: int):
        """The analysis plan; `book_plies` of every own game are the shared book, not the model's moves."""
        from transcend_pipeline.state_advantage import AnalysisPlan

        return AnalysisPlan(
            self.positions_per_source,
            self.comparison_positions,
            self.depth,
            tuple(self.temperatures),
            tuple(self.figure_temperatures),
            self.top_positions,
            self.workers,
            self.seed,
            book_plies,
        )


def resources_from_env(months: list[str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources for the current environment (see the README for every variable); `months` overrides the
    run's months ($TRANSCEND_MONTHS or the source's default)."""
    settings = Settings.from_env()
    months = months or default_months(settings)
    source: DumpSource
    if settings.source == "lichess":
        source = LichessSource(base_url=settings.lichess_url, months=months, workers=settings.workers)
    else:
        source = PanelSource(
            profile=settings.profile, stockfish_path=settings.stockfish_path, workers=settings.workers, months=months
        )
    return {
        "home": TranscendHome(path=str(settings.home), lake_path=str(settings.lake or "")),
        "dump_source": source,
        "training": TrainingSettings.from_env(),
        "evaluation": EvaluationSettings.for_profile(settings.profile, settings.workers),
        "advantage": StateAdvantageSettings.for_profile(settings.profile),
    }
