"""The experiment table (`experiments.yaml`): which bucket each model trains on, at what size and budget.

A declarative file rather than code, so a researcher adds an experiment by adding
a row; the Dagster layer turns the names into the partitions of every asset from
`training_set` on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from transcend_pipeline.settings import PROFILES

EXPERIMENTS_FILE = Path(__file__).with_name("experiments.yaml")
MODEL_SIZES = ("tiny", "paper")


class ExperimentError(ValueError):
    """A row of the experiment table is malformed."""


@dataclass(frozen=True)
class Variant:
    """A diversity ablation: the experiment's bucket is replaced by as many games played by only `players` players.

    Such a bucket fails the diversity gates by design; `waive` names the expectations it may fail (and only those),
    so the exception is explicit, per experiment, and shown in the UI, while every other guard still holds.
    """

    players: int
    waive: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return "clones of one player" if self.players == 1 else f"{self.players} players"


@dataclass(frozen=True)
class Experiment:
    name: str
    cap: int
    model: str
    steps: dict[str, int]
    months: tuple[str, ...] | None = None
    variant: Variant | None = None
    description: str = ""
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


def load_experiments(path: Path = EXPERIMENTS_FILE) -> dict[str, Experiment]:
    """Read and validate the experiment table, keyed by name (in file order)."""
    rows = (yaml.safe_load(path.read_text()) or {}).get("experiments") or []
    experiments: dict[str, Experiment] = {}
    for row in rows:
        row = dict(row)
        try:
            name, cap, model, steps = row.pop("name"), int(row.pop("cap")), row.pop("model"), row.pop("steps")
        except KeyError as missing:
            raise ExperimentError(f"{path}: an experiment lacks {missing}: {row}") from None
        if name in experiments:
            raise ExperimentError(f"{path}: experiment {name!r} is defined twice")
        if model not in MODEL_SIZES:
            raise ExperimentError(f"{path}: experiment {name!r} has model {model!r}, expected one of {MODEL_SIZES}")
        months = row.pop("months", None)
        experiments[name] = Experiment(
            name=name,
            cap=cap,
            model=model,
            steps=_steps(path, name, steps),
            months=tuple(str(month) for month in months) if months else None,
            variant=_variant(path, name, row.pop("variant", None)),
            description=row.pop("description", ""),
            extra=row,
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
    if not isinstance(value, dict) or not isinstance(value.get("players"), int) or value["players"] < 1:
        raise ExperimentError(
            f"{path}: experiment {name!r} has variant {value!r}, expected {{players: k >= 1, waive: [...]}}"
        )
    unknown = set(value) - {"players", "waive"}
    if unknown:
        raise ExperimentError(f"{path}: experiment {name!r}: unknown variant keys {sorted(unknown)}")
    return Variant(players=value["players"], waive=tuple(value.get("waive") or ()))
