"""Where transcend keeps its data and which external tools it uses.

Everything is read from environment variables so that the same code runs from
`make run`, from tests (each with its own temporary home) and on a cluster.
Pure Python: the Dagster resources in `transcend_pipeline.defs.resources` wrap
these values, domain code takes them as plain arguments.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LICHESS_URL = "https://database.lichess.org/standard"
SOURCES = ("panel", "lichess")
PROFILES = ("demo", "smoke")

DAGSTER_YAML = """\
# Written by transcend: run history lives next to the data it describes.
telemetry:
  enabled: false
# One writer at a time per pool: steps that write the DuckDB warehouse share the pool "warehouse".
concurrency:
  pools:
    granularity: op
    default_limit: 1
"""


class StockfishNotFoundError(RuntimeError):
    """Raised when no Stockfish binary can be found; the message says how to install one."""


def find_stockfish(configured: str | None = None) -> str:
    """Return the Stockfish binary: `configured` (or $STOCKFISH_PATH), `stockfish` on PATH, else Debian's path."""
    candidates = [configured or os.environ.get("STOCKFISH_PATH") or "", "stockfish", "/usr/games/stockfish"]
    for candidate in candidates:
        if candidate and (found := shutil.which(candidate)):
            return found
    raise StockfishNotFoundError(
        "Stockfish was not found (tried $STOCKFISH_PATH, `stockfish` on PATH and /usr/games/stockfish). "
        "Install it with `apt-get install -y stockfish` (Debian/Ubuntu) or `brew install stockfish`, "
        "or point STOCKFISH_PATH at the binary."
    )


@dataclass(frozen=True)
class Settings:
    """The process-wide configuration, one field per environment variable."""

    home: Path
    source: str = "panel"
    lichess_url: str = DEFAULT_LICHESS_URL
    profile: str = "demo"
    stockfish_path: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        source = os.environ.get("TRANSCEND_SOURCE", "panel").strip().lower()
        if source not in SOURCES:
            raise ValueError(f"TRANSCEND_SOURCE must be one of {SOURCES}, got {source!r}")
        profile = os.environ.get("TRANSCEND_PROFILE", "demo").strip().lower()
        if profile not in PROFILES:
            raise ValueError(f"TRANSCEND_PROFILE must be one of {PROFILES}, got {profile!r}")
        return cls(
            home=Path(os.environ.get("TRANSCEND_HOME", "data")).expanduser().resolve(),
            source=source,
            lichess_url=os.environ.get("TRANSCEND_LICHESS_URL", DEFAULT_LICHESS_URL).rstrip("/"),
            profile=profile,
            stockfish_path=os.environ.get("STOCKFISH_PATH", ""),
        )

    @property
    def raw_dir(self) -> Path:
        return self.home / "raw"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"


def ensure_dagster_home(home: Path) -> Path:
    """Create `home/dagster` with telemetry off and return it, so run history survives restarts."""
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return dagster_home
