"""The Dagster definitions load fast, validate, and keep heavy libraries out of import time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY_MODULES = ("torch", "lightning", "great_expectations", "chess", "rust_pgn_reader_python_binding", "pandas")


def test_definitions_validate_with_the_dagster_cli(transcend_home: Path) -> None:
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Validation successful for code location transcend" in completed.stdout + completed.stderr


def test_importing_definitions_does_not_import_heavy_libraries(transcend_home: Path) -> None:
    probe = (
        "import json, sys; import transcend_pipeline.definitions; "
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=os.environ.copy(), timeout=120, check=True
    )
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []


def test_every_asset_is_described_grouped_and_kinded(transcend_home: Path) -> None:
    from transcend_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key} has no description"
        assert node.group_name and node.group_name != "default", f"{key} has no group"
        assert node.kinds, f"{key} has no kinds"


def test_source_follows_the_environment(transcend_home: Path, monkeypatch) -> None:
    from transcend_pipeline.defs.resources import LichessSource, PanelSource, resources_from_env

    assert isinstance(resources_from_env()["dump_source"], PanelSource)
    monkeypatch.setenv("TRANSCEND_SOURCE", "lichess")
    monkeypatch.setenv("TRANSCEND_LICHESS_URL", "http://127.0.0.1:9/standard/")
    source = resources_from_env()["dump_source"]
    assert isinstance(source, LichessSource)
    assert source.base_url == "http://127.0.0.1:9/standard"
    assert resources_from_env()["home"].path == str(transcend_home)
    monkeypatch.setenv("TRANSCEND_SOURCE", "kaggle")
    with pytest.raises(ValueError, match="TRANSCEND_SOURCE must be one of"):
        resources_from_env()


def test_dagster_home_has_telemetry_off(transcend_home: Path) -> None:
    config = (transcend_home / "dagster" / "dagster.yaml").read_text()
    assert "telemetry:\n  enabled: false" in config


def test_the_executor_is_dagsters_default_unless_a_celery_broker_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $TRANSCEND_CELERY_BROKER every job runs as before; with it, every job and the UI's asset runs hand
    their steps to dagster-celery workers, the broker's URL resolved from the environment when a run starts."""
    import dagster as dg

    from transcend_pipeline.definitions import build_definitions
    from transcend_pipeline.defs.jobs import CELERY_BROKER_VARIABLE, executor_from_env

    monkeypatch.delenv(CELERY_BROKER_VARIABLE, raising=False)
    assert executor_from_env() is None
    default = build_definitions(["2025-01"])
    assert default.resolve_job_def("ingest_month").executor_def is dg.multi_or_in_process_executor
    monkeypatch.setenv(CELERY_BROKER_VARIABLE, "redis://:s3cret@127.0.0.1:6379/0")
    celery = build_definitions(["2025-01"])
    for job in (celery.resolve_job_def("ingest_month"), celery.resolve_implicit_global_asset_job_def()):
        assert job.executor_def.name == "celery"
    executor = executor_from_env()
    rotated = "redis://:rotated@127.0.0.1:6379/0"
    monkeypatch.setenv(CELERY_BROKER_VARIABLE, rotated)  # read when a run starts, not kept from when it loaded
    config = executor.config_schema.resolve_config({}).value["config"]
    assert config["broker"] == config["backend"] == rotated
    rabbitmq = "amqp://transcend:s3cret@127.0.0.1:5672//"  # results come back as messages: Celery 5 stores none
    monkeypatch.setenv(CELERY_BROKER_VARIABLE, rabbitmq)
    config = executor_from_env().config_schema.resolve_config({}).value["config"]
    assert (config["broker"], config["backend"]) == (rabbitmq, "rpc://")


def test_workers_acknowledge_a_step_once_it_has_finished(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed in a step must leave the step's task in the broker for another worker, after the visibility
    timeout of the environment (tests/test_distributed_lake.py kills one for real)."""
    import importlib

    from transcend_pipeline import celery_worker

    monkeypatch.setenv(celery_worker.VISIBILITY_TIMEOUT_VARIABLE, "0")
    with pytest.raises(ValueError, match=celery_worker.VISIBILITY_TIMEOUT_VARIABLE):
        importlib.reload(celery_worker)
    monkeypatch.setenv(celery_worker.VISIBILITY_TIMEOUT_VARIABLE, "120")
    app = importlib.reload(celery_worker).app
    app.finalize()
    assert app.tasks["execute_plan"].acks_late
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] == 120


@pytest.mark.parametrize("warehouse", ["duckdb", "lake"])
def test_month_writers_queue_for_the_duckdb_file_and_not_for_the_lake(transcend_home: Path, warehouse: str) -> None:
    """With the DuckDB file every writer of it shares the pool `warehouse` (one writing process); on the lake a
    month's steps are Delta commits of their own and take no pool, so workers write months at once. The bucket
    tables stay in the DuckDB file either way."""
    probe = (
        "import json; from transcend_pipeline.definitions import defs; "
        "print(json.dumps({k: defs.resolve_assets_def(k).node_def.pool for k in "
        "('games', 'stg_games', 'bucket_games', 'panel_players')}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=os.environ | {"TRANSCEND_WAREHOUSE": warehouse},
        timeout=120,
        check=True,
    )
    pools = json.loads(completed.stdout.strip().splitlines()[-1])
    month_pool = "warehouse" if warehouse == "duckdb" else None
    assert pools == {
        "games": month_pool,
        "stg_games": month_pool,
        "bucket_games": "warehouse",
        "panel_players": "warehouse",
    }
