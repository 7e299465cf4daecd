"""Shared fixtures: real sample files, a private data directory per test, Stockfish, a local Lichess mirror."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from transcend_pipeline.lichess import dump_filename
from transcend_pipeline.settings import StockfishNotFoundError, ensure_dagster_home, find_stockfish

REPO_ROOT = Path(__file__).resolve().parents[1]
LICHESS_SAMPLES = REPO_ROOT.parent / "shared" / "data" / "lichess-samples"
SAMPLE_2021_10 = "lichess_2021-10_dump_excerpt_999games.pgn"


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


def publish(directory: Path, month: str, pgn: bytes) -> Path:
    """Write a month as Lichess does (zstd) and list it in sha256sums.txt."""
    path = directory / dump_filename(month)
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(pgn))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with (directory / "sha256sums.txt").open("a") as sums:
        sums.write(f"{digest}  {path.name}\n")
    return path


@pytest.fixture()
def lichess_mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server on 127.0.0.1 serving a directory laid out like database.lichess.org/standard."""
    root = tmp_path / "mirror"
    (root / "standard").mkdir(parents=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/standard", root / "standard"
    finally:
        server.shutdown()
        server.server_close()
