"""The experiment table (`experiments.yaml`): which bucket each model trains on, at what size and budget.

A declarative file rather than code, so a researcher adds an experiment by adding
a row; the Dagster layer turns the names into the partitions of every asset from
`training_set` on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from transcend_pipeline.settings import PROFILES
from transcend_pipeline.sql_models import PROJECT_ROOT, load_vars

EXPERIMENTS_FILE = Path(__file__).with_name("experiments.yaml")
MODEL_SIZES = ("tiny", "paper")


class ExperimentError(ValueError):
    """A row of the experiment table is malformed."""


@dataclass(frozen=True)
class Variant:
    """A diversity arm: the experiment's bucket is replaced by as many games, played by a variant of its players.

    Exactly one dial is set:
    - `rho` (panel data): the bucket's own pairings replayed by the same players (same T_r, σ_r) whose quirk tables
      are mixed with one shared table by ρ — their errors correlate, their skill stays;
    - `equal_players` (panel data): k players with the skill of the bucket's best player, differing only in their
      quirk seeds (the first is that player), playing distinct random pairings; k = 1 is its self-play (clones);
    - `players` (Lichess data): the bucket's games in which one of its k most active players took part.

    Such a bucket may fail diversity gates by design; `waive` names the expectations it may fail (and only those),
    so the exception is explicit, per experiment, and shown in the UI, while every other guard still holds.
    """

    rho: float | None = None
    equal_players: int | None = None
    players: int | None = None
    waive: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        dials = [name for name in ("rho", "equal_players", "players") if getattr(self, name) is not None]
        if len(dials) != 1:
            raise ExperimentError(f"a variant sets exactly one of rho, equal_players, players; got {dials or 'none'}")
        if self.rho is not None and not 0.0 <= self.rho <= 1.0:
            raise ExperimentError(f"rho must lie in [0, 1], got {self.rho}")
        for count in (self.equal_players, self.players):
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
                raise ExperimentError(f"a player count must be a positive integer, got {count!r}")

    @property
    def dial(self) -> tuple[str, float]:
        """('rho', ρ), ('k', k) for equal players, or ('players', k)."""
        if self.rho is not None:
            return "rho", self.rho
        if self.equal_players is not None:
            return "k", self.equal_players
        return "players", self.players

    @property
    def panel_only(self) -> bool:
        return self.players is None

    @property
    def label(self) -> str:
        dial, value = self.dial
        if dial == "rho":
            return f"same players, quirks correlated ρ = {value:g}"
        if dial == "k":
            return "clones of the best player" if value == 1 else f"{value:g} equal players"
        return f"{value:g} most active players"


@dataclass(frozen=True)
class Experiment:
    """One model to train and rate. `arm` names its data (several training seeds of one arm share it); `name`,
    the partition key, is the arm for its first seed and `<arm>_seed<n>` for the others."""

    name: str
    cap: int
    model: str
    steps: dict[str, int]
    months: tuple[str, ...] | None = None
    variant: Variant | None = None
    description: str = ""
    seed: int = 0
    arm: str = ""
    study: str | None = None  # the study job this experiment belongs to ('diversity'), if any
    by_default: bool = True  # `make run` trains it (the first seed of a row unless the row says `by_default: false`)
    extra: dict = field(default_factory=dict)

    def budget_steps(self, profile: str) -> int:
        """The training budget for a profile (`demo`, `smoke`) in optimiser steps: unlike wall time, a step count
        stops training at the same weights on any machine, however fast or busy."""
        if profile not in self.steps:
            raise ExperimentError(f"experiment {self.name!r} has no training budget for profile {profile!r}")
        return self.steps[profile]

    def data_months(self, default: list[str]) -> list[str]:
        """The months this experiment trains on: its own window, or the run's months."""
        return list(self.months) if self.months else list(default)


def load_experiments(path: Path | None = None, caps: Sequence[int] | None = None) -> dict[str, Experiment]:
    """Read and validate the experiment table (`path`, else $TRANSCEND_EXPERIMENTS, else the packaged
    experiments.yaml), keyed by name (in file order; a row's seeds one after another). Every cap must be one the
    warehouse builds a bucket for (`caps`, else dbt_project.yml's): a typo would train on an empty bucket."""
    path = path or Path(os.environ.get("TRANSCEND_EXPERIMENTS") or EXPERIMENTS_FILE)
    caps = [int(cap) for cap in load_vars(PROJECT_ROOT)["caps"]] if caps is None else list(caps)
    rows = (yaml.safe_load(path.read_text()) or {}).get("experiments") or []
    experiments: dict[str, Experiment] = {}
    for row in rows:
        row = dict(row)
        try:
            arm, cap, model, steps = row.pop("name"), int(row.pop("cap")), row.pop("model"), row.pop("steps")
        except KeyError as missing:
            raise ExperimentError(f"{path}: an experiment lacks {missing}: {row}") from None
        if cap not in caps:
            raise ExperimentError(f"{path}: experiment {arm!r} has cap {cap}; the warehouse builds buckets for {caps}")
        if model not in MODEL_SIZES:
            raise ExperimentError(f"{path}: experiment {arm!r} has model {model!r}, expected one of {MODEL_SIZES}")
        seeds = row.pop("seeds", [0])
        if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and s >= 0 for s in seeds):
            raise ExperimentError(f"{path}: experiment {arm!r} has seeds {seeds!r}, expected distinct integers >= 0")
        months = row.pop("months", None)
        common = dict(
            cap=cap,
            model=model,
            steps=_steps(path, arm, steps),
            months=tuple(str(month) for month in months) if months else None,
            variant=_variant(path, arm, row.pop("variant", None)),
            description=row.pop("description", ""),
            arm=arm,
            study=row.pop("study", None),
        )
        by_default = bool(row.pop("by_default", True))
        for position, seed in enumerate(seeds):
            name = arm if position == 0 else f"{arm}_seed{seed}"
            if name in experiments:
                raise ExperimentError(f"{path}: experiment {name!r} is defined twice")
            experiments[name] = Experiment(
                name=name, seed=seed, by_default=by_default and position == 0, extra=dict(row), **common
            )
    return experiments


def _steps(path: Path, name: str, value: object) -> dict[str, int]:
    """The step budget per profile: a mapping, or a single number for every profile; each a positive int."""
    steps = value if isinstance(value, dict) else dict.fromkeys(PROFILES, value)
    for profile, count in steps.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ExperimentError(
                f"{path}: experiment {name!r} has steps {count!r} for profile {profile!r}, expected a positive integer"
            )
    return dict(steps)


def _variant(path: Path, name: str, value: dict | None) -> Variant | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ExperimentError(f"{path}: experiment {name!r} has variant {value!r}, expected a mapping")
    unknown = set(value) - {"rho", "equal_players", "players", "waive"}
    if unknown:
        raise ExperimentError(f"{path}: experiment {name!r}: unknown variant keys {sorted(unknown)}")
    try:
        return Variant(
            rho=None if value.get("rho") is None else float(value["rho"]),
            equal_players=value.get("equal_players"),
            players=value.get("players"),
            waive=tuple(value.get("waive") or ()),
        )
    except ExperimentError as error:
        raise ExperimentError(f"{path}: experiment {name!r}: {error}") from None
