"""`make ui`: the Dagster UI starts on 127.0.0.1, shows the whole asset graph, and stops cleanly by its PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fixtures import REPO_ROOT
from services import free_ports


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


@pytest.mark.slow
def test_the_ui_serves_the_asset_graph_on_loopback(transcend_home: Path) -> None:
    (port,) = free_ports(1)
    server = subprocess.Popen(
        [sys.executable, "-m", "transcend_pipeline.cli", "ui", "--port", str(port)],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so the webserver's children stop with it
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                nodes = graphql(port, "{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
                break
            except OSError:
                assert server.poll() is None, "dagster dev exited early"
                assert time.monotonic() < deadline, "the UI did not answer within 120 s"
                time.sleep(1)
        groups = {node["assetKey"]["path"][-1]: node["groupName"] for node in nodes}
        assert groups["games"] == "ingestion"
        assert groups["bucket_games"] == "marts"
        assert groups["chessformer"] == "training"
        assert groups["transcendence_report"] == "evaluation"
        assert (transcend_home / "dagster" / "dagster.yaml").exists()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
