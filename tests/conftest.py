"""Shared fixtures: real sample files, a private data directory per test, Stockfish."""

from __future__ import annotations

from pathlib import Path

import pytest

from transcend_pipeline.settings import StockfishNotFoundError, ensure_dagster_home, find_stockfish

REPO_ROOT = Path(__file__).resolve().parents[1]
LICHESS_SAMPLES = REPO_ROOT.parent / "shared" / "data" / "lichess-samples"


@pytest.fixture(scope="session")
def lichess_samples() -> Path:
    """The real Lichess excerpts kept in ../shared (read from there, never copied into the repo)."""
    if not LICHESS_SAMPLES.is_dir():
        pytest.fail(f"sample data missing: {LICHESS_SAMPLES} (CI lays shared/ beside the clone)")
    return LICHESS_SAMPLES


@pytest.fixture(scope="session")
def stockfish_path() -> str:
    try:
        return find_stockfish()
    except StockfishNotFoundError as error:
        pytest.fail(str(error))


@pytest.fixture()
def transcend_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TRANSCEND_HOME for one test, so tests never share a warehouse."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("TRANSCEND_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(ensure_dagster_home(home)))
    return home
