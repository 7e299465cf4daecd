"""Shared fixtures: real sample files, a private data directory per test, Stockfish, a local Lichess mirror, and real
Postgres and Redis servers for the tests marked `distributed`."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures import LICHESS_SAMPLES
from services import (
    Service,
    object_store_server,
    postgres_bin_dir,
    postgres_server,
    rabbitmq_binary,
    rabbitmq_server,
    redis_binary,
    redis_server,
    require_installed,
)

from transcend_pipeline.settings import StockfishNotFoundError, ensure_dagster_home, find_stockfish


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[Service]:
    """A real Postgres server on 127.0.0.1 for the session, password required; tests create their own databases."""
    require_installed(postgres_bin_dir)
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_service() -> Iterator[Service]:
    """A real Redis server on 127.0.0.1 for the session, password required, persisting nothing."""
    require_installed(redis_binary)
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def object_store() -> Iterator[Service]:
    """An S3 endpoint on 127.0.0.1 for the session (moto's server: no object store can be reached from here)."""
    with object_store_server() as server:
        yield server


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[Service]:
    """A real RabbitMQ node on 127.0.0.1 for the session, password required."""
    require_installed(rabbitmq_binary)
    with rabbitmq_server() as server:
        yield server
