"""Dagster deployed as its users deploy it: instance storage on a real Postgres, month steps executed by real
dagster-celery workers on a real Redis broker, real Lichess months served over 127.0.0.1, and a backfill launched
through the webserver as the UI launches one and run by the daemon.

The servers, workers, webserver and daemon are started by these tests and stopped by process id (conftest.py,
services.py).
"""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from fixtures import SAMPLE_2013_01, SAMPLE_2021_10, SAMPLE_API_EXPORT, games_in, publish
from services import (
    DagsterServices,
    Service,
    create_database,
    dagster_url,
    dagster_webserver_and_daemon,
    graphql,
    set_up_instance,
    start_workers,
    stop_process,
)

from transcend_pipeline.defs.ingestion import games, raw_dump
from transcend_pipeline.defs.jobs import CELERY_BROKER_VARIABLE
from transcend_pipeline.defs.resources import LichessSource, TranscendHome
from transcend_pipeline.settings import DAGSTER_PG_URL_VARIABLE, ensure_dagster_home
from transcend_pipeline.warehouse import open_warehouse

pytestmark = pytest.mark.distributed

#: Real months of different shapes, published as these months: a 2021 dump head, a 2013 one, one player's API export.
MONTHS = {"2021-10": SAMPLE_2021_10, "2013-01": SAMPLE_2013_01, "2022-12": SAMPLE_API_EXPORT}
GATE_TIMEOUT_S = 45.0  # under the downloader's 60 s read timeout, so a closed gate fails an assertion, not a retry
RUN_TIMEOUT_S = 300.0


def files_holding(directory: Path, secrets: list[str]) -> list[Path]:
    """The files under `directory` in which any of `secrets` appears."""
    return [
        path
        for path in directory.rglob("*")
        if path.is_file() and any(secret.encode() in path.read_bytes() for secret in secrets)
    ]


def test_a_run_is_recorded_in_postgres_and_no_instance_file_holds_the_password(
    tmp_path: Path,
    postgres: Service,
    lichess_samples: Path,
    lichess_mirror: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = create_database(postgres, "storage")
    base_url, served = lichess_mirror
    publish(served, "2013-01", (lichess_samples / SAMPLE_2013_01).read_bytes())
    home = tmp_path / "home"
    monkeypatch.setenv(DAGSTER_PG_URL_VARIABLE, dagster_url(url))
    dagster_home = ensure_dagster_home(home)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize(
            [raw_dump, games],
            partition_key="2013-01-01",
            resources={"home": TranscendHome(path=str(home)), "dump_source": LichessSource(base_url=base_url)},
            instance=instance,
        )
    assert result.success
    assert result.asset_materializations_for_node("games")[0].metadata["games_read"].value == 10

    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", [result.run_id])
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute(
            "SELECT asset_key, partition FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            [result.run_id, "ASSET_MATERIALIZATION"],
        )
        assert sorted(cursor.fetchall()) == [('["games"]', "2013-01-01"), ('["raw_dump"]', "2013-01-01")]
        # `games` ran in the `warehouse` pool: its limit of one writer, from dagster.yaml, now lives in Postgres.
        cursor.execute("SELECT count(*) FROM concurrency_slots WHERE concurrency_key = 'warehouse'")
        assert cursor.fetchone() == (1,)
    config = (dagster_home / "dagster.yaml").read_text()
    assert f"env: {DAGSTER_PG_URL_VARIABLE}" in config
    assert files_holding(dagster_home, [postgres.password]) == []


class DumpGate:
    """Holds every dump download until dumps of two months are being downloaded at once. Only two workers running
    `raw_dump` steps at the same time open it: one worker alone would wait here for itself until the timeout."""

    def __init__(self) -> None:
        self.requested: set[str] = set()
        self.lock = threading.Lock()
        self.opened = threading.Event()

    def wait(self, name: str) -> None:
        with self.lock:
            self.requested.add(name)
            if len(self.requested) >= 2:
                self.opened.set()
        self.opened.wait(GATE_TIMEOUT_S)


@pytest.fixture()
def gated_mirror(tmp_path: Path) -> Iterator[tuple[str, Path, DumpGate]]:
    """A Lichess mirror on 127.0.0.1 like conftest's `lichess_mirror`, whose dump downloads pass a `DumpGate`."""
    root, gate = tmp_path / "mirror", DumpGate()
    (root / "standard").mkdir(parents=True)

    class GatedHandler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith(".pgn.zst"):
                gate.wait(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(GatedHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/standard", root / "standard", gate
    finally:
        server.shutdown()
        server.server_close()


LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
  }
}
"""
BACKFILL_STATUS = """
query ($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }
"""
#: A backfill's statuses while the daemon still has work to do on it; any other is final.
BACKFILL_IN_PROGRESS = {"REQUESTED", "CANCELING", "FAILING"}


def wait_for_backfill(services: DagsterServices, backfill_id: str) -> str:
    """Until the backfill has a final status, which is returned (polled through the webserver, as the UI does)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        services.assert_running()
        status = graphql(services.url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]
        if status not in BACKFILL_IN_PROGRESS:
            return status
        time.sleep(1)
    log = (services.log_dir / "daemon.log").read_text()[-5000:]
    pytest.fail(f"backfill {backfill_id} still in progress after {RUN_TIMEOUT_S} s; the daemon's log ends:\n{log}")


def test_two_celery_workers_ingest_three_real_months_as_one_backfill_with_the_run_history_in_postgres(
    tmp_path: Path,
    postgres: Service,
    redis_service: Service,
    lichess_samples: Path,
    gated_mirror: tuple[str, Path, DumpGate],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base_url, served, gate = gated_mirror
    for month, sample in MONTHS.items():
        publish(served, month, (lichess_samples / sample).read_bytes())
    home = tmp_path / "home"
    settings = {
        "TRANSCEND_HOME": str(home),
        "TRANSCEND_SOURCE": "lichess",
        "TRANSCEND_LICHESS_URL": base_url,
        DAGSTER_PG_URL_VARIABLE: dagster_url(create_database(postgres, "celery")),
        CELERY_BROKER_VARIABLE: redis_service.url,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(ensure_dagster_home(home)))
    env = dict(os.environ)
    set_up_instance(env)
    workers = start_workers(2, env, redis_service.url, tmp_path)
    worker_pids = {worker.pid for worker in workers}
    try:
        with dagster_webserver_and_daemon(env, tmp_path) as services:
            # As the UI launches a backfill of the selected assets over the selected months: the daemon's backfill
            # loop then submits a run per month, its run queue launches them, and each run hands its steps to Celery.
            params = {
                "partitionNames": [f"{month}-01" for month in MONTHS],
                "assetSelection": [{"path": ["raw_dump"]}, {"path": ["games"]}],
            }
            launched = graphql(services.url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            backfill_id = launched["backfillId"]
            status = wait_for_backfill(services, backfill_id)
    finally:
        for worker in workers:
            stop_process(worker, signal.SIGTERM)  # Celery's warm shutdown
    assert status == "COMPLETED_SUCCESS", (tmp_path / "daemon.log").read_text()[-5000:]

    assert gate.opened.is_set(), "no two dumps were ever downloaded at once: the steps did not run on two workers"
    # Neither in the instance's config, nor in the step logs that the runs and the workers wrote, nor in the logs
    # of the workers, the webserver and the daemon.
    assert files_holding(tmp_path, [redis_service.password, postgres.password]) == []
    with dg.DagsterInstance.get() as instance:
        assert instance.get_backfill(backfill_id).status.value == "COMPLETED_SUCCESS"  # as the instance stores it
        records = instance.get_run_records()
        # Every run is the backfill's: one per month, each materialising both assets of its month.
        assert len(records) == len(MONTHS)
        assert {record.dagster_run.tags.get("dagster/backfill") for record in records} == {backfill_id}
        assert sorted(record.dagster_run.tags["dagster/partition"] for record in records) == sorted(
            f"{month}-01" for month in MONTHS
        )
        step_pids: dict[tuple[str, str], list[int]] = {}
        parses: list[tuple[float, float]] = []  # when each month's `games` step started and ended
        for record in records:
            run = record.dagster_run
            assert run.status == dg.DagsterRunStatus.SUCCESS
            stored = json.dumps([run.run_config, run.tags])
            assert redis_service.password not in stored and postgres.password not in stored
            ended = {
                entry.step_key: entry.timestamp
                for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
            }
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START):
                step = (run.tags["dagster/partition"][:7], entry.step_key)
                step_pids[step] = [*step_pids.get(step, []), entry.dagster_event.pid]
                if entry.step_key == "games":
                    parses.append((entry.timestamp, ended["games"]))
        materialized = {
            month: instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("games"), asset_partitions=[f"{month}-01"]), limit=1
            ).records[0]
            for month in MONTHS
        }
    # Every step ran in a worker, none in the processes that launched the runs; the downloads on both.
    assert set(step_pids) == {(month, step) for month in MONTHS for step in ("raw_dump", "games")}
    assert all(len(pids) == 1 for pids in step_pids.values()), step_pids  # each step ran once
    assert {pid for (pid,) in step_pids.values()} <= worker_pids
    assert {step_pids[(month, "raw_dump")][0] for month in MONTHS} == worker_pids
    # The `warehouse` pool, kept in Postgres, let one month at a time write the DuckDB file, across both workers.
    parses.sort()
    assert len(parses) == len(MONTHS)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(parses)), parses

    with open_warehouse(home / "warehouse.duckdb", read_only=True) as connection:
        query = "SELECT month, count(*), count(DISTINCT game_id) FROM games GROUP BY month"
        accepted = {month: (rows, ids) for month, rows, ids in connection.execute(query).fetchall()}
        quarantined = dict(connection.execute("SELECT month, count(*) FROM games_quarantine GROUP BY month").fetchall())
    assert set(accepted) <= set(MONTHS) and set(quarantined) <= set(MONTHS)
    for month, sample in MONTHS.items():
        metadata = materialized[month].asset_materialization.metadata
        read = games_in(lichess_samples / sample)
        rows, ids = accepted.get(month, (0, 0))
        assert metadata["games_read"].value == read == rows + quarantined.get(month, 0), month
        assert metadata["games_accepted"].value == rows == ids, month  # each game id once
