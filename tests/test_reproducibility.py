"""Same seed, same answer: two smoke runs from empty data directories, one with one worker and one with two, give
the same dump, games, checkpoints, evaluation games and ratings, however fast or busy the machine is (the two run at
once, so each sees a machine the other keeps busy)."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from transcend_pipeline.experiments import load_experiments
from transcend_pipeline.settings import ensure_dagster_home
from transcend_pipeline.warehouse import open_warehouse

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The runs compared, by TRANSCEND_WORKERS (dump writers and Stockfish engines) and TRANSCEND_PARALLEL_EXPERIMENTS.
WORKERS = ("1", "2")
#: Columns that time the run rather than describe its results: left out of the comparison.
TIMING_COLUMNS = frozenset({"wall_seconds", "seconds", "started_at", "finished_at"})
DUMP = Path("raw/panel-smoke/lichess_db_standard_rated_2025-01.pgn.zst")


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The data directory of each run, by its worker count; both runs go at once, in separate subprocesses."""
    runs: dict[str, tuple[Path, subprocess.Popen]] = {}
    try:
        for workers in WORKERS:
            home = tmp_path_factory.mktemp(f"workers{workers}") / "home"
            home.mkdir()
            env = os.environ | {
                "TRANSCEND_PROFILE": "smoke",
                "TRANSCEND_SOURCE": "panel",
                "TRANSCEND_HOME": str(home),
                "DAGSTER_HOME": str(ensure_dagster_home(home)),
                "TRANSCEND_WORKERS": workers,
                "TRANSCEND_PARALLEL_EXPERIMENTS": workers,  # experiments one at a time, or two at once
            }
            env.pop("TRANSCEND_MONTHS", None)
            with (home.parent / "run.log").open("w") as log:
                command = [sys.executable, "-m", "transcend_pipeline.cli", "run"]
                process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            runs[workers] = home, process
        for workers, (home, process) in runs.items():
            returncode = process.wait(timeout=1800)  # about 5 minutes each, both at once; more on a loaded machine
            log = (home.parent / "run.log").read_text()
            assert returncode == 0, f"the run with {workers} worker(s) failed:\n{log[-4000:]}"
        yield {workers: home for workers, (home, _) in runs.items()}
    finally:
        for _, process in runs.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_raw_dumps_are_the_same_bytes(homes: dict[str, Path]) -> None:
    digests = {workers: hashlib.sha256((home / DUMP).read_bytes()).hexdigest() for workers, home in homes.items()}
    assert len(set(digests.values())) == 1, f"sha256 of {DUMP} by workers: {digests}"


def test_the_ingested_games_are_the_same(homes: dict[str, Path]) -> None:
    assert_same_table(homes, "games")


def test_every_experiments_best_checkpoint_has_the_same_weights(homes: dict[str, Path]) -> None:
    for experiment in (name for name, e in load_experiments().items() if e.by_default):  # what `run` trains
        first, second = (
            torch.load(home / "checkpoints" / experiment / "best.ckpt", map_location="cpu", weights_only=True)
            for home in homes.values()
        )
        assert first["global_step"] == second["global_step"], f"{experiment}: best weights of different steps"
        weights, other = first["state_dict"], second["state_dict"]
        assert list(weights) == list(other), f"{experiment}: different parameters"
        for name, tensor in weights.items():
            if not torch.equal(tensor, other[name]):
                gap = (tensor.double() - other[name].double()).abs().max().item()
                pytest.fail(f"{experiment}: best.ckpt differs first in {name} (largest difference {gap:.3g})")


def test_the_evaluation_and_ladder_games_are_the_same(homes: dict[str, Path]) -> None:
    assert_same_table(homes, "evaluation_games")
    assert_same_table(homes, "ladder_games", optional=True)


def test_the_ratings_and_verdicts_are_the_same(homes: dict[str, Path]) -> None:
    assert_same_table(homes, "ratings")
    assert_same_table(homes, "transcendence")


def assert_same_table(homes: dict[str, Path], table: str, *, optional: bool = False) -> None:
    """The table's rows (every column but timings), sorted, are the same in every run; a failure names the first
    differing row and column."""
    (first_workers, first), (second_workers, second) = (
        (workers, table_rows(home, table)) for workers, home in homes.items()
    )
    if optional and first is None and second is None:
        return
    assert first is not None and second is not None, f"{table} exists in one run only"
    (columns, rows), (other_columns, other_rows) = first, second
    assert columns == other_columns, f"{table}: columns {columns} != {other_columns}"
    for index, (row, other) in enumerate(zip(rows, other_rows, strict=False)):
        for column, value, other_value in zip(columns, row, other, strict=True):
            if not same_value(value, other_value):
                context = repr(dict(zip(columns, row, strict=True)))[:600]
                pytest.fail(
                    f"{table} ({len(rows)} against {len(other_rows)} rows): sorted row {index} differs first in "
                    f"{column!r}: {value!r} with TRANSCEND_WORKERS={first_workers}, {other_value!r} with "
                    f"{second_workers}; the row: {context}"
                )
    assert len(rows) == len(other_rows), f"{table}: {len(rows)} rows != {len(other_rows)}"


def table_rows(home: Path, table: str) -> tuple[list[str], list[tuple]] | None:
    """(columns, rows sorted by every column) of a warehouse table, timing columns left out; None if it is absent."""
    with open_warehouse(home / "warehouse.duckdb", read_only=True) as connection:
        columns = [
            name
            for (name,) in connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ? "
                "ORDER BY ordinal_position",
                [table],
            ).fetchall()
            if name not in TIMING_COLUMNS
        ]
        if not columns:
            return None
        selected = ", ".join(f'"{name}"' for name in columns)
        return columns, connection.execute(f'SELECT {selected} FROM "{table}" ORDER BY ALL').fetchall()


def same_value(value: object, other: object) -> bool:
    """Equal, counting NaN equal to NaN (a statistic neither run could compute is the same answer)."""
    both_nan = isinstance(value, float) and isinstance(other, float) and math.isnan(value) and math.isnan(other)
    return both_nan or value == other
