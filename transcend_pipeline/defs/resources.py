"""Dagster resources: thin, typed wrappers around `transcend_pipeline.settings` and the domain sources.

Resource values are read from the environment when the definitions load, so the
Dagster UI's resource page shows the configuration a run will use. Heavy domain
modules are imported inside methods, keeping `dagster definitions validate` fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from transcend_pipeline.settings import DEFAULT_LICHESS_URL, Settings, find_stockfish


class TranscendHome(dg.ConfigurableResource):
    """The data directory ($TRANSCEND_HOME): raw dumps, the DuckDB warehouse, checkpoints and reports."""

    path: str

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
    """Where monthly dumps come from. Downstream assets cannot tell the sources apart."""

    @property
    def label(self) -> str:
        """The folder under raw/ for this source, so dumps of different sources never mix."""
        raise NotImplementedError

    def fetch(self, month: str, dest_dir: Path, log: dg.DagsterLogManager) -> FetchedDump:
        raise NotImplementedError

    def ground_truth(self, month: str, dump_path: Path) -> list[dict]:
        """The true parameters of the players behind a dump, where the source knows them (the panel does)."""
        return []


class LichessSource(DumpSource):
    """The Lichess open database ($TRANSCEND_LICHESS_URL): streamed, resumable, checksum-verified downloads."""

    base_url: str = DEFAULT_LICHESS_URL

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
    workers: int = 2

    @property
    def label(self) -> str:
        return f"panel-{self.profile}"

    def fetch(self, month: str, dest_dir: Path, log: dg.DagsterLogManager) -> FetchedDump:
        from transcend_pipeline.lichess import dump_filename, sha256_file
        from transcend_pipeline.panel import PanelConfig, write_month_dump

        target = dest_dir / dump_filename(month)
        if target.exists():  # dumps are deterministic per (profile, month): an existing one is the same file
            return FetchedDump(target, target.stat().st_size, sha256_file(target), f"panel:{self.profile}", 0.0, False)

        last_logged = [-1e9]

        def progress(games: int, seconds: float) -> None:
            if seconds - last_logged[0] >= 10:  # a line every ten seconds, not one per chunk of games
                last_logged[0] = seconds
                log.info(f"{month}: {games:,} panel games at {games / max(seconds, 1e-9):,.1f} games/s")

        result = write_month_dump(
            PanelConfig.for_profile(self.profile),
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
        from transcend_pipeline.panel import PanelConfig, panel_players

        return panel_players(PanelConfig.for_profile(self.profile), month, dump_path)


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """The resources for the current environment (see the README for every variable)."""
    settings = Settings.from_env()
    source: DumpSource
    if settings.source == "lichess":
        source = LichessSource(base_url=settings.lichess_url)
    else:
        source = PanelSource(profile=settings.profile, stockfish_path=settings.stockfish_path, workers=settings.workers)
    return {"home": TranscendHome(path=str(settings.home)), "dump_source": source}
