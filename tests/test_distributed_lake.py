"""Celery workers writing the lake (TRANSCEND_WAREHOUSE=lake): two months parsed at once on two workers while one of
them is rerun; and a worker killed in the middle of a month, on the lake and on the DuckDB file (whose month writers
hold a slot of the `warehouse` pool in Postgres). Real Postgres, Redis and Celery workers, real Lichess months served
over 127.0.0.1, all started by the tests and stopped by process id (conftest.py, services.py).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import zstandard
from deltalake import DeltaTable
from fixtures import SAMPLE_2013_01, SAMPLE_2021_10, SAMPLE_API_EXPORT, games_in, publish
from services import (
    Service,
    create_database,
    dagster_url,
    materialize_in_background,
    redis_database,
    set_up_instance,
    start_workers,
    stop_process,
)

from transcend_pipeline.celery_worker import VISIBILITY_TIMEOUT_VARIABLE
from transcend_pipeline.defs.jobs import CELERY_BROKER_VARIABLE
from transcend_pipeline.lichess import dump_filename
from transcend_pipeline.settings import DAGSTER_PG_URL_VARIABLE, ensure_dagster_home
from transcend_pipeline.warehouse import open_warehouse

pytestmark = pytest.mark.distributed

RUN_TIMEOUT_S = 300.0
STEP_START_TIMEOUT_S = 120.0
#: Each test's broker is a Redis database of its own (0 is test_distributed.py's), and its instance a Postgres one.
BROKER_DATABASES = itertools.count(1)
#: A month's `games` step parsing in one process and checking every game's moves: the slowest way, so that a long
#: month is long with fewer bytes.
ONE_SLOW_PARSE = json.dumps({"ops": {"games": {"config": {"workers": 1, "moves_max_elo": None}}}})
START, SUCCESS = dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS
ONE_PROCESS = json.dumps({"ops": {"games": {"config": {"workers": 1}}}})  # no helper left behind by a killed worker


@dataclass
class Deployment:
    """Dagster on Postgres with two Celery workers on Redis, writing the `warehouse` (`lake` or `duckdb`, as
    $TRANSCEND_WAREHOUSE) under `home`, with months served from `served`. `launch` starts runs as a shell user does;
    every process is stopped when the test ends."""

    home: Path
    served: Path
    env: dict[str, str]
    workers: list[subprocess.Popen]
    warehouse: str = "lake"
    runs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def duckdb_file(self) -> Path:
        return self.home / "warehouse.duckdb"

    def months(self) -> dict[str, tuple[int, int, int, str]]:
        """Per month of the warehouse: (games, distinct game ids, quarantined games, md5 of the sorted game ids)."""
        if self.warehouse == "lake":
            return warehouse_months(open_warehouse(None, lake=self.lake))
        return warehouse_months(open_warehouse(self.duckdb_file, read_only=True))

    def version(self) -> object:
        """What changes when the month tables are written: the lake's `games` version; the DuckDB file's modification
        time and size, and whether a write-ahead log lies beside it."""
        if self.warehouse == "lake":
            return DeltaTable(self.lake / "games").version()
        stat = self.duckdb_file.stat()
        return stat.st_mtime_ns, stat.st_size, self.duckdb_file.with_name(self.duckdb_file.name + ".wal").exists()

    @property
    def worker_pids(self) -> set[int]:
        return {worker.pid for worker in self.workers}

    def launch(self, selection: str, month: str, config: str | None = None) -> subprocess.Popen:
        run = materialize_in_background(selection, month, self.env, config)
        self.runs.append(run)
        return run

    def wait(self, *runs: subprocess.Popen) -> None:
        """Until each of `runs` has ended; each must have succeeded."""
        for run in runs:
            output = run.communicate(timeout=RUN_TIMEOUT_S)[0]
            assert run.returncode == 0, output[-5000:]


@pytest.fixture()
def deploy(
    tmp_path: Path,
    postgres: Service,
    redis_service: Service,
    lichess_mirror: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., Deployment]]:
    """Starts a `Deployment` whose workers have the given extra environment, writing the given warehouse (the lake
    unless told) through the given broker (`redis`, or `rabbitmq`); stops its runs and workers after."""
    started: list[Deployment] = []

    def start(worker_settings: dict[str, str], warehouse: str = "lake", broker_kind: str = "redis") -> Deployment:
        base_url, served = lichess_mirror
        home = tmp_path / "home"
        index = next(BROKER_DATABASES)
        if broker_kind == "rabbitmq":  # one test at a time uses the node's queue
            broker = request.getfixturevalue("rabbitmq").url
        else:
            broker = redis_database(redis_service, index)
        settings = {
            "TRANSCEND_HOME": str(home),
            "TRANSCEND_SOURCE": "lichess",
            "TRANSCEND_LICHESS_URL": base_url,
            "TRANSCEND_WAREHOUSE": warehouse,
            DAGSTER_PG_URL_VARIABLE: dagster_url(create_database(postgres, f"{warehouse}{index}")),
            CELERY_BROKER_VARIABLE: broker,
        }
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DAGSTER_HOME", str(ensure_dagster_home(home)))
        env = dict(os.environ)
        set_up_instance(env)  # two runs are launched at once on the new database
        workers = start_workers(2, {**env, **worker_settings}, broker, tmp_path)
        deployment = Deployment(home, served, env, workers, warehouse)
        started.append(deployment)
        return deployment

    yield start
    for deployment in started:
        for process in [*deployment.runs, *deployment.workers]:
            stop_process(process, signal.SIGTERM)  # for the workers, Celery's warm shutdown


def copies_of(sample: Path, copies: int) -> bytes:
    """`copies` of a real month one after the other, each game's Site id suffixed with its copy's number: a month as
    long as needed whose games are all distinct, and which python-chess reads as `copies` times the sample."""
    pgn = sample.read_bytes().rstrip(b"\n") + b"\n\n"
    site = re.compile(rb'^(\[Site "https://lichess\.org/\w+)"\]', re.MULTILINE)
    return b"".join(site.sub(rb'\g<1>c%d"]' % copy, pgn) for copy in range(copies))


def warehouse_months(warehouse: AbstractContextManager[duckdb.DuckDBPyConnection]) -> dict[str, tuple]:
    """Per month of the `warehouse` opened: (games, distinct game ids, quarantined games, md5 of the sorted game ids),
    as DuckDB reads them."""
    with warehouse as connection:
        query = "SELECT month, count(*), count(DISTINCT game_id), md5(string_agg(game_id, ',' ORDER BY game_id))"
        games = connection.execute(f"{query} FROM games GROUP BY month")
        counts = {month: (rows, ids, digest) for month, rows, ids, digest in games.fetchall()}
        quarantined = dict(connection.execute("SELECT month, count(*) FROM games_quarantine GROUP BY month").fetchall())
    return {
        month: (rows, ids, quarantined.get(month, 0), digest)
        for month in counts.keys() | quarantined
        for rows, ids, digest in [counts.get(month, (0, 0, None))]
    }


def runs_of(instance: dg.DagsterInstance, month: str) -> list[dg.DagsterRun]:
    """The month's runs, oldest first."""
    records = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/partition": f"{month}-01"}))
    return [record.dagster_run for record in sorted(records, key=lambda record: record.create_timestamp)]


def step_events(instance: dg.DagsterInstance, run_id: str, step: str, kind: dg.DagsterEventType) -> list:
    """The run's events of `kind` for `step`, in order."""
    return [entry for entry in instance.all_logs(run_id, of_type=kind) if entry.step_key == step]


def wait_for_step_start(instance: dg.DagsterInstance, month: str, step: str, known_runs: set[str]) -> tuple[str, int]:
    """Until a run of `month` not in `known_runs` has started `step` on a worker; returns (run id, worker pid), read
    from the event log in Postgres, where the worker wrote the step's start."""
    deadline = time.monotonic() + STEP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        for run in runs_of(instance, month):
            if run.run_id not in known_runs and (starts := step_events(instance, run.run_id, step, START)):
                return run.run_id, starts[0].dagster_event.pid
        time.sleep(0.1)
    pytest.fail(f"no new run of {month} started {step} in {STEP_START_TIMEOUT_S} s")


def pool_claims(instance: dg.DagsterInstance) -> set[tuple[str, str]]:
    """The (run id, step) holding slots of the `warehouse` pool."""
    claimed = instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots
    return {(slot.run_id, slot.step_key) for slot in claimed}


def assert_counts_balance(
    instance: dg.DagsterInstance, deployment: Deployment, month: str, expected_games: int
) -> None:
    """The month's last `games` materialisation read python-chess's count of games, and the warehouse holds exactly
    the games it accepted and quarantined, each game id once."""
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("games"), asset_partitions=[f"{month}-01"]), limit=1
    ).records[0]
    metadata = record.asset_materialization.metadata
    accepted, distinct, quarantined, _ = deployment.months()[month]
    assert metadata["games_read"].value == expected_games == accepted + quarantined, month
    assert metadata["games_accepted"].value == accepted == distinct, month


def test_two_workers_write_months_of_the_lake_at_once_and_a_month_rerun_meanwhile_keeps_its_rows(
    deploy: Callable[..., Deployment], lichess_samples: Path
) -> None:
    deployment = deploy({})
    small = {"2022-12": lichess_samples / SAMPLE_API_EXPORT, "2013-01": lichess_samples / SAMPLE_2013_01}
    for month, sample in small.items():
        publish(deployment.served, month, sample.read_bytes())
    long_month, copies = "2021-10", 300
    publish(deployment.served, long_month, copies_of(lichess_samples / SAMPLE_2021_10, copies))
    expected = {month: games_in(sample) for month, sample in small.items()}
    expected[long_month] = games_in(lichess_samples / SAMPLE_2021_10) * copies
    rerun_month = "2022-12"

    deployment.wait(*[deployment.launch("raw_dump,games,stg_games", month) for month in small])
    before = deployment.months()[rerun_month]
    with dg.DagsterInstance.get() as instance:
        known = {run.run_id for month in small for run in runs_of(instance, month)}
        long_run = deployment.launch("raw_dump,games", long_month, ONE_SLOW_PARSE)
        wait_for_step_start(instance, long_month, "games", known)
        # The long month's parse has begun on one worker: rerun another month's parse, on the other.
        deployment.wait(deployment.launch("games", rerun_month), long_run)

        parses = {}  # month -> (worker pid, start, end) of its last `games` step
        for month in expected:
            runs = runs_of(instance, month)
            assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), month
            (start,), (end,) = (step_events(instance, runs[-1].run_id, "games", kind) for kind in (START, SUCCESS))
            parses[month] = (start.dagster_event.pid, start.timestamp, end.timestamp)
            assert_counts_balance(instance, deployment, month, expected[month])
        assert len(runs_of(instance, rerun_month)) == 2
        staged = {  # month -> its `stg_games` materialisation
            month: instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("stg_games"), asset_partitions=[f"{month}-01"]), limit=1
            ).records[0]
            for month in small
        }
    assert {pid for pid, _, _ in parses.values()} <= deployment.worker_pids
    # The rerun's parse and the long month's ran at once, on different workers: no pool holds months apart.
    (long_pid, long_start, long_end), (rerun_pid, rerun_start, rerun_end) = parses[long_month], parses[rerun_month]
    assert long_pid != rerun_pid
    assert long_start < rerun_end and rerun_start < long_end, parses
    # The rerun replaced the month with the same rows, beside the long month's commit, and duplicated none.
    assert deployment.months()[rerun_month] == before
    assert set(deployment.months()) == set(expected)
    # The two months ingested at once also wrote their staging model into the lake (its gate passed), each game once.
    with open_warehouse(None, lake=deployment.lake) as connection:
        query = "SELECT month, count(*), count(DISTINCT game_id) FROM stg_games GROUP BY month"
        stg_games = {month: (rows, ids) for month, rows, ids in connection.execute(query).fetchall()}
    for month, record in staged.items():
        rows = record.asset_materialization.metadata["dagster/row_count"].value
        assert stg_games[month] == (rows, rows), month
        assert 0 < rows <= deployment.months()[month][0], month


def wait_until_writing(pid: int, path: Path, size: int) -> None:
    """Until the process `pid` has the DuckDB file at `path` open and the file has grown past `size`: the month's
    swap has begun its transaction and written part of the new rows into the file, uncommitted."""
    deadline = time.monotonic() + STEP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert Path(f"/proc/{pid}").exists(), f"process {pid} exited"
        try:
            files = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:  # a descriptor closed while being read
            files = set()
        if str(path) in files and path.stat().st_size > size:
            return
        time.sleep(0.002)
    pytest.fail(f"process {pid} wrote nothing into {path} in {STEP_START_TIMEOUT_S} s")


@pytest.mark.parametrize(
    ("warehouse", "killed_in", "broker"),
    [
        ("lake", "parse", "redis"),
        ("duckdb", "parse", "redis"),
        ("duckdb", "swap", "redis"),
        ("lake", "parse", "rabbitmq"),
    ],
)
def test_a_worker_killed_in_the_middle_of_a_month_leaves_its_rows_and_another_worker_completes_the_run(
    deploy: Callable[..., Deployment], lichess_samples: Path, warehouse: str, killed_in: str, broker: str
) -> None:
    # Redis hands a killed worker's task to another after its visibility timeout: short here, and longer than any
    # step of this test (a step still running after it would run twice, which the assertions below would see).
    # RabbitMQ requeues it as soon as the worker's connection drops: its workers keep the default timeout of 6 h,
    # which only Redis reads, so the run below completes in time only if RabbitMQ redelivered the task at once.
    worker_settings = {VISIBILITY_TIMEOUT_VARIABLE: "30"} if broker == "redis" else {}
    deployment = deploy(worker_settings, warehouse, broker)
    month, copies, sample = "2021-10", 150, lichess_samples / SAMPLE_2021_10
    publish(deployment.served, month, copies_of(sample, copies - 10))
    deployment.wait(deployment.launch("raw_dump,games", month, ONE_PROCESS))
    before, version = deployment.months()[month], deployment.version()
    # The dump then grows by ten copies (as if republished), so that the rows of the rerun differ from the first's.
    dump = deployment.home / "raw" / "lichess" / dump_filename(month)
    dump.write_bytes(zstandard.ZstdCompressor(level=1).compress(copies_of(sample, copies)))
    expected = games_in(sample) * copies

    with dg.DagsterInstance.get() as instance:
        (first,) = runs_of(instance, month)
        assert len(step_events(instance, first.run_id, "games", START)) == 1  # no healthy step outlasted the timeout
        known = {first.run_id}
        rerun = deployment.launch("games", month, ONE_PROCESS)
        run_id, victim_pid = wait_for_step_start(instance, month, "games", known)
        if killed_in == "swap":  # the DuckDB file's transaction, half written
            wait_until_writing(victim_pid, deployment.duckdb_file, deployment.duckdb_file.stat().st_size)
        (victim,) = [worker for worker in deployment.workers if worker.pid == victim_pid]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        # The month's rows (count and ids) are those of the first run: killed in its parse, the lake's table and
        # the DuckDB file did not even move; killed in its swap, the file, which opens again (no lock left), holds
        # the last committed rows.
        assert deployment.months()[month] == before
        if killed_in == "parse":
            assert deployment.version() == version
        # With the DuckDB file, the run process claimed the step's slot of the `warehouse` pool (in Postgres) before
        # sending the task: the slot stays the run's while the task waits for another worker, no other writer of
        # the file can take it meanwhile, and the redelivered step runs under it. The lake takes no pool.
        assert pool_claims(instance) == ({(run_id, "games")} if warehouse == "duckdb" else set())

        deployment.wait(rerun)  # the other worker receives the task again and finishes the same run
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        assert pool_claims(instance) == set()  # the step's success gave the slot back
        starts, ends = (step_events(instance, run_id, "games", kind) for kind in (START, SUCCESS))
        (survivor,) = deployment.worker_pids - {victim_pid}
        assert [entry.dagster_event.pid for entry in starts] == [victim_pid, survivor]
        assert [entry.dagster_event.pid for entry in ends] == [survivor]
        assert_counts_balance(instance, deployment, month, expected)  # the longer month's games, each id once
    assert deployment.months()[month][0] > before[0]
    if warehouse == "lake":
        assert DeltaTable(deployment.lake / "games").version() == version + 1  # in one commit
