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
from datetime import UTC, date, datetime
from pathlib import Path

DEFAULT_LICHESS_URL = "https://database.lichess.org/standard"
SOURCES = ("panel", "lichess")
WAREHOUSES = ("duckdb", "lake")  # where the monthly tables live: the DuckDB file, or Delta tables (lake.py)
#: How much work each profile affords, in one table: `demo` is the `make run` world, `smoke` runs in seconds (tests).
#: Each entry overrides the defaults of the panel (`PanelConfig`), evaluation (`EvaluationSettings`) and state
#: analysis (`StateAdvantageSettings`); an experiment's training steps per profile are in experiments.yaml.
PROFILES: dict[str, dict[str, dict]] = {
    "demo": {"panel": {}, "evaluation": {}, "state_advantage": {}},
    "smoke": {
        "panel": {
            "n_players": 16,
            "games_per_month": 240,
            "max_plies": 60,
            "resign_plies": 2,
            "chunk_games": 10,
            "rating_spread": 2.5,
            "pairing_window": 150.0,
        },
        "evaluation": {
            "sweep_temperatures": [0.001, 1.0],
            "sweep_games": 8,
            "confirm_games": 8,
            "baseline_games": 8,
            "ladder_members": 4,
            "bucket_top": 1,
            "stockfish_nodes": [100],
            "level_nodes": 2_000,
            "games_per_pair": 2,
            "book_openings": 8,
        },
        "state_advantage": {
            "positions_per_source": 12,
            "comparison_positions": 12,
            "depth": 1,
            "temperatures": [0.001, 1.0],
            "figure_temperatures": [0.001],
        },
    },
}


def profile_overrides(profile: str, part: str) -> dict:
    """What `profile` changes in `part` ('panel', 'evaluation', 'state_advantage'); an unknown profile is an error."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {tuple(PROFILES)}")
    return dict(PROFILES[profile][part])


DEFAULT_PANEL_MONTHS = ("2025-01",)
PAPER_TEMPERATURES = (0.001, 0.01, 0.1, 0.3, 0.5, 0.75, 1.0, 1.5)  # the temperatures the paper samples at
DEBIAN_STOCKFISH = "/usr/games/stockfish"  # Debian's package installs it off PATH

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
DAGSTER_PG_URL_VARIABLE = "TRANSCEND_DAGSTER_PG_URL"
# dagster-postgres talks to Postgres through SQLAlchemy and installs psycopg2, but SQLAlchemy 2.1 reads a bare
# `postgresql://` URL as psycopg 3: the URL must name its driver.
DAGSTER_PG_SCHEME = "postgresql+psycopg2://"
# Appended when $TRANSCEND_DAGSTER_PG_URL is set. An `env:` reference: Dagster reads the URL (and its password) from
# the environment of each process that opens the instance, so it never enters this file nor what runs send workers.
POSTGRES_STORAGE_YAML = f"""\
# Run history, event logs, schedules and pool slots live in Postgres instead, shared by every machine of a deployment.
storage:
  postgres:
    postgres_url:
      env: {DAGSTER_PG_URL_VARIABLE}
"""


class StockfishNotFoundError(RuntimeError):
    """Raised when no Stockfish binary can be found; the message says how to install one."""


def find_stockfish(configured: str | None = None) -> str:
    """Return the Stockfish binary: `configured` (or $STOCKFISH_PATH) if given, else `stockfish` on PATH or Debian's."""
    explicit = configured or os.environ.get("STOCKFISH_PATH")
    if explicit:
        if found := shutil.which(explicit):
            return found
        raise StockfishNotFoundError(f"STOCKFISH_PATH={explicit!r} is not an executable Stockfish binary.")
    for candidate in ("stockfish", DEBIAN_STOCKFISH):
        if found := shutil.which(candidate):
            return found
    raise StockfishNotFoundError(
        "Stockfish was not found (tried `stockfish` on PATH and /usr/games/stockfish). "
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
    workers: int = 2  # processes writing the panel dump, and Stockfish engines in an evaluation's pool
    parallel_experiments: int = 2  # experiments `transcend run` trains and evaluates at once (one core each)
    lake: Path | str | None = None  # TRANSCEND_WAREHOUSE=lake: the monthly tables' Delta lake; None: the DuckDB file

    @classmethod
    def from_env(cls) -> Settings:
        source = os.environ.get("TRANSCEND_SOURCE", "panel").strip().lower()
        if source not in SOURCES:
            raise ValueError(f"TRANSCEND_SOURCE must be one of {SOURCES}, got {source!r}")
        profile = os.environ.get("TRANSCEND_PROFILE", "demo").strip().lower()
        if profile not in PROFILES:
            raise ValueError(f"TRANSCEND_PROFILE must be one of {tuple(PROFILES)}, got {profile!r}")
        warehouse = warehouse_kind()
        home = Path(os.environ.get("TRANSCEND_HOME", "data")).expanduser().resolve()
        lake = lake_location(os.environ.get("TRANSCEND_LAKE", "").strip() or str(home / "lake"))
        return cls(
            home=home,
            source=source,
            lichess_url=os.environ.get("TRANSCEND_LICHESS_URL", DEFAULT_LICHESS_URL).rstrip("/"),
            profile=profile,
            stockfish_path=os.environ.get("STOCKFISH_PATH", ""),
            workers=positive_int("TRANSCEND_WORKERS", default=2),
            parallel_experiments=positive_int("TRANSCEND_PARALLEL_EXPERIMENTS", default=2),
            lake=lake if warehouse == "lake" else None,
        )


def is_url(location: Path | str) -> bool:
    """Whether a lake's location is an object-store URL (`s3://bucket/prefix`, `gs://`, `az://`), not a folder."""
    return "://" in str(location)


def lake_location(text: str) -> Path | str:
    """A lake as $TRANSCEND_LAKE names it: an object-store URL as given, or a local folder, made absolute so that
    every process and worker means the same one."""
    return text if is_url(text) else Path(text).expanduser().resolve()


def warehouse_kind() -> str:
    """$TRANSCEND_WAREHOUSE: `duckdb` (the default) or `lake`."""
    warehouse = os.environ.get("TRANSCEND_WAREHOUSE", "duckdb").strip().lower()
    if warehouse not in WAREHOUSES:
        raise ValueError(f"TRANSCEND_WAREHOUSE must be one of {WAREHOUSES}, got {warehouse!r}")
    return warehouse


def positive_int(variable: str, default: int) -> int:
    """The integer in $`variable` (`default` when unset or blank); anything but a positive integer is an error."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{variable} must be a positive integer, got {value!r}")
    return int(value)


def last_complete_month(today: date | None = None) -> str:
    """The newest month Lichess can have published: the one before `today`'s."""
    today = today or datetime.now(UTC).date()
    first = today.replace(day=1)
    previous = (
        first.replace(year=first.year - 1, month=12) if first.month == 1 else first.replace(month=first.month - 1)
    )
    return previous.strftime("%Y-%m")


def default_months(settings: Settings) -> list[str]:
    """$TRANSCEND_MONTHS (comma-separated YYYY-MM), else the panel's demo month or Lichess's last complete month.

    The panel's default is a fixed month so that `make run` is reproducible: its dump is a function of the month.
    """
    if months := os.environ.get("TRANSCEND_MONTHS"):
        return [month.strip() for month in months.split(",") if month.strip()]
    return list(DEFAULT_PANEL_MONTHS) if settings.source == "panel" else [last_complete_month()]


def dagster_yaml(postgres: bool) -> str:
    """The instance config transcend writes: SQLite in the data directory, or Postgres at $TRANSCEND_DAGSTER_PG_URL."""
    return DAGSTER_YAML + POSTGRES_STORAGE_YAML if postgres else DAGSTER_YAML


def ensure_dagster_home(home: Path) -> Path:
    """Create `home/dagster` with the instance config of this environment and return it, so run history survives.

    The storage follows $TRANSCEND_DAGSTER_PG_URL: a config transcend wrote is rewritten when the variable is set or
    unset, so runs never record into the other storage unnoticed. An edited config is kept, but one that ignores a
    set variable is refused rather than used: its runs would go to SQLite while the user expects Postgres.
    """
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    url = os.environ.get(DAGSTER_PG_URL_VARIABLE, "").strip()
    if url and not url.startswith(DAGSTER_PG_SCHEME):
        raise ValueError(f"{DAGSTER_PG_URL_VARIABLE} must start with {DAGSTER_PG_SCHEME} (dagster-postgres's driver)")
    postgres = bool(url)
    current = config.read_text() if config.exists() else None
    if current is None or current in (dagster_yaml(postgres=False), dagster_yaml(postgres=True)):
        if current != dagster_yaml(postgres):
            config.write_text(dagster_yaml(postgres))
    elif postgres and DAGSTER_PG_URL_VARIABLE not in current:
        raise ValueError(
            f"{DAGSTER_PG_URL_VARIABLE} is set but {config} (edited by hand) does not read it: its runs would be "
            f"recorded in SQLite. Add the storage block below to it, or delete it to have it written again:\n"
            f"{POSTGRES_STORAGE_YAML}"
        )
    return dagster_home
