"""Real Postgres, Redis and RabbitMQ servers, an S3 endpoint, Celery workers and Dagster runs for the tests marked `distributed`, started and
stopped by the tests themselves.

Each listens on 127.0.0.1 only, on a free port, requires a random password, keeps its files in a temporary directory
and is stopped by its process id. Postgres refuses to run as root: as root, its processes run as the unprivileged
`postgres` user that the Debian package creates (RabbitMQ as `rabbitmq`). `make test` installs the packages when we
are root.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from fixtures import REPO_ROOT

from transcend_pipeline.defs.jobs import celery_result_backend
from transcend_pipeline.settings import DAGSTER_PG_SCHEME

STARTUP_TIMEOUT_S = 60.0
WORKERS_TIMEOUT_S = 90.0
PORT_ATTEMPTS = 3
# How Postgres, Redis, RabbitMQ (AMQP and Erlang distribution), werkzeug and uvicorn say a port was taken.
PORT_TAKEN = re.compile(r"address already in use|eaddrinuse|could not bind|is in use by another program", re.I)

T = TypeVar("T")


class ServiceMissingError(RuntimeError):
    """A server's binaries are not installed; the message says how to install them."""


class PortTakenError(RuntimeError):
    """A server exited because another process bound one of its ports after `free_ports` had found it free."""


@dataclass(frozen=True)
class Service:
    """A running server: its URL (with the password), the password alone (to look for leaks) and its process id."""

    url: str
    password: str
    pid: int


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (the server binds them a moment later: see
    `_start_on_free_ports` for when another process is quicker)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:  # all bound at once, so that no two are the same
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def postgres_bin_dir() -> Path:
    """The directory of `initdb` and `postgres`: `pg_ctl` on PATH (Debian links it there) or the newest under
    /usr/lib/postgresql."""
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda path: float(Path(path).parts[-3]))
    candidates = [shutil.which("pg_ctl"), *reversed(installed)]
    for candidate in filter(None, candidates):
        bin_dir = Path(candidate).resolve().parent
        if (bin_dir / "initdb").exists() and (bin_dir / "postgres").exists():
            return bin_dir
    raise ServiceMissingError("Postgres is not installed: `apt-get install -y postgresql` (make test does it as root).")


def redis_binary() -> str:
    if found := shutil.which("redis-server"):
        return found
    raise ServiceMissingError("Redis is not installed: `apt-get install -y redis-server` (make test does it as root).")


def rabbitmq_binary() -> Path:
    found = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    if found.exists() and shutil.which("epmd"):
        return found
    raise ServiceMissingError(
        "RabbitMQ is not installed: `apt-get install -y rabbitmq-server` (make test does it as root)."
    )


def require_installed(find_binaries: Callable[[], object]) -> None:
    """Fail where a server is missing although `make test` could have installed it (we are root); skip elsewhere."""
    try:
        find_binaries()
    except ServiceMissingError as error:
        if os.geteuid() == 0:
            pytest.fail(str(error))
        pytest.skip(f"{error} Not root here, so the tests that need it are skipped.")


def _unprivileged(user_name: str = "postgres") -> dict:
    """Popen arguments that run a child as `user_name` when we are root (Postgres will not run as root), else none."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam(user_name)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def stop_process(process: subprocess.Popen, stop_signal: int) -> None:
    """Stop the server by its process id, politely first."""
    if process.poll() is None:
        os.kill(process.pid, stop_signal)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def _stop_processes(processes: list[subprocess.Popen], stop_signal: int) -> None:
    """Stop a server's processes, the last started first."""
    for process in reversed(processes):
        stop_process(process, stop_signal)


def _start_on_free_ports(start: Callable[[], T], processes: list[subprocess.Popen], stop_signal: int) -> T:
    """`start()`, which launches a server on ports from `free_ports` (appending its processes to `processes`) and
    waits until it serves; again, on fresh ports, if the server exits because a port was taken meanwhile. A port
    is free only until someone binds it: another test's server, or any outgoing connection, since the kernel picks
    those ports from the same range (CI once saw RabbitMQ fail so)."""
    for _ in range(PORT_ATTEMPTS - 1):
        try:
            return start()
        except PortTakenError:
            _stop_processes(processes, stop_signal)
            processes.clear()
    return start()


def _wait_until_ready(process: subprocess.Popen, log: Path, ready: Callable[[], object]) -> None:
    """Call `ready` until it stops raising; fail with the server's log if it exits (`PortTakenError` if it says a
    port was taken) or takes too long."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            output = log.read_text()
            error = PortTakenError if PORT_TAKEN.search(output) else RuntimeError
            raise error(f"server exited with {process.returncode}:\n{output}")
        try:
            ready()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextmanager
def postgres_server() -> Iterator[Service]:
    """A fresh Postgres cluster with one superuser, `transcend`, authenticated by scram-sha-256 over TCP only."""
    import psycopg2

    bin_dir = postgres_bin_dir()
    as_postgres = _unprivileged()
    root = Path(tempfile.mkdtemp(prefix="transcend-postgres-"))
    processes: list[subprocess.Popen] = []
    try:
        if as_postgres:
            os.chown(root, as_postgres["user"], as_postgres["group"])
        password = secrets.token_hex(16)
        password_file = root / "password"
        password_file.write_text(password)
        password_file.chmod(0o600)
        if as_postgres:
            os.chown(password_file, as_postgres["user"], as_postgres["group"])
        data = root / "data"
        initdb = [
            bin_dir / "initdb",
            "-D",
            data,
            "-U",
            "transcend",
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
        ]
        subprocess.run(
            [*initdb, "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            cwd=root,
            check=True,
            capture_output=True,
            **as_postgres,
        )
        password_file.unlink()
        log = root / "postgres.log"
        settings = ["listen_addresses=127.0.0.1", "unix_socket_directories=", "fsync=off", "max_connections=200"]

        def start() -> Service:
            (port,) = free_ports(1)
            with log.open("w") as output:
                command = [bin_dir / "postgres", "-D", data, "-p", str(port), *(f"-c{setting}" for setting in settings)]
                processes.append(
                    subprocess.Popen(command, cwd=root, stdout=output, stderr=subprocess.STDOUT, **as_postgres)
                )
            url = f"postgresql://transcend:{password}@127.0.0.1:{port}/postgres"
            _wait_until_ready(processes[-1], log, lambda: psycopg2.connect(url, connect_timeout=5).close())
            return Service(url, password, processes[-1].pid)

        yield _start_on_free_ports(start, processes, signal.SIGINT)
    finally:
        _stop_processes(processes, signal.SIGINT)  # Postgres's "fast" shutdown
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: Service, name: str) -> str:
    """A new database on `server`, for one test; returns its URL."""
    import psycopg2

    connection = psycopg2.connect(server.url)
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def redis_server() -> Iterator[Service]:
    """A Redis server that persists nothing; its password is in a config file only we can read, not on its command
    line (which every user of the machine can see)."""
    import redis

    binary = redis_binary()
    root = Path(tempfile.mkdtemp(prefix="transcend-redis-"))
    processes: list[subprocess.Popen] = []
    try:
        password, config, log = secrets.token_hex(16), root / "redis.conf", root / "redis.log"
        config.touch(mode=0o600)

        def start() -> Service:
            (port,) = free_ports(1)
            config.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {password}\n"
                f'save ""\nappendonly no\ndir {root}\n'
            )
            with log.open("w") as output:
                processes.append(subprocess.Popen([binary, config], cwd=root, stdout=output, stderr=subprocess.STDOUT))
            url = f"redis://:{password}@127.0.0.1:{port}/0"
            _wait_until_ready(processes[-1], log, lambda: redis.Redis.from_url(url, socket_timeout=5).ping())
            return Service(url, password, processes[-1].pid)

        yield _start_on_free_ports(start, processes, signal.SIGTERM)
    finally:
        _stop_processes(processes, signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def rabbitmq_server() -> Iterator[Service]:
    """A RabbitMQ node with one user, `transcend`, on 127.0.0.1 only: its AMQP listener, its Erlang distribution port
    and its own port mapper (epmd, started here as our child rather than as the machine-wide daemon), all on free
    ports. The password is in a config file only the server can read."""
    from kombu import Connection

    binary = rabbitmq_binary()
    as_rabbitmq = _unprivileged("rabbitmq")
    root = Path(tempfile.mkdtemp(prefix="transcend-rabbitmq-"))
    processes: list[subprocess.Popen] = []
    try:
        password, config, log = secrets.token_hex(16), root / "rabbitmq.conf", root / "rabbitmq.log"
        config.touch(mode=0o600)
        if as_rabbitmq:
            os.chown(root, as_rabbitmq["user"], as_rabbitmq["group"])
            os.chown(config, as_rabbitmq["user"], as_rabbitmq["group"])

        def start() -> Service:
            port, dist_port, epmd_port = free_ports(3)
            config.write_text(
                f"default_user = transcend\ndefault_pass = {password}\nlisteners.tcp.1 = 127.0.0.1:{port}\n"
                "loopback_users = none\n"
            )
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(root),  # the Erlang cookie
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "ERL_EPMD_PORT": str(epmd_port),
                "RABBITMQ_NODENAME": f"transcend-{port}@localhost",
                "RABBITMQ_DIST_PORT": str(dist_port),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
                "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
                "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
                "RABBITMQ_LOG_BASE": str(root / "log"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(root / "pid"),
                "RABBITMQ_LOGS": "-",
            }
            with log.open("w") as output:
                for command in (["epmd", "-address", "127.0.0.1", "-port", str(epmd_port)], [binary]):
                    processes.append(
                        subprocess.Popen(command, cwd=root, env=env, stdout=output, stderr=output, **as_rabbitmq)
                    )
            url = f"amqp://transcend:{password}@127.0.0.1:{port}//"
            _wait_until_ready(
                processes[-1], log, lambda: Connection(url, connect_timeout=2).ensure_connection(max_retries=1)
            )
            return Service(url, password, processes[-1].pid)

        yield _start_on_free_ports(start, processes, signal.SIGTERM)
    finally:
        _stop_processes(processes, signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


def redis_database(server: Service, index: int) -> str:
    """The URL of database `index` of the Redis `server`: each test's broker on its own, so that no task one test
    leaves in a queue reaches another test's workers."""
    return server.url.rsplit("/", 1)[0] + f"/{index}"


@contextmanager
def object_store_server() -> Iterator[Service]:
    """An S3 endpoint on 127.0.0.1 for the lake's object-store tests: moto's server, which speaks S3's HTTP API
    (conditional writes included) in one process, since no real object store can be reached from here. It checks
    no credentials, so `password` is only the secret key the clients send."""
    import boto3

    root = Path(tempfile.mkdtemp(prefix="transcend-s3-"))
    processes: list[subprocess.Popen] = []
    try:
        log, secret = root / "s3.log", secrets.token_hex(16)

        def start() -> Service:
            (port,) = free_ports(1)
            with log.open("w") as output:
                command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
                processes.append(subprocess.Popen(command, cwd=root, stdout=output, stderr=subprocess.STDOUT))
            url = f"http://127.0.0.1:{port}"
            client = boto3.client(
                "s3",
                endpoint_url=url,
                aws_access_key_id="transcend",
                aws_secret_access_key=secret,
                region_name="us-east-1",
            )
            _wait_until_ready(processes[-1], log, client.list_buckets)
            return Service(url, secret, processes[-1].pid)

        yield _start_on_free_ports(start, processes, signal.SIGTERM)
    finally:
        _stop_processes(processes, signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


def object_store_environment(server: Service) -> dict[str, str]:
    """The variables through which delta-rs (and boto3) reach `server`, as a deployment sets them for an S3-compatible
    store: credentials and endpoint (`AWS_ALLOW_HTTP`: the test server has no TLS). Commits need nothing more:
    delta-rs 1.x creates each with a conditional write (`If-None-Match: *`), which the server honours."""
    return {
        "AWS_ACCESS_KEY_ID": "transcend",
        "AWS_SECRET_ACCESS_KEY": server.password,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ALLOW_HTTP": "true",
    }


def dagster_url(url: str) -> str:
    """A libpq URL as dagster-postgres needs it, naming its driver."""
    return url.replace("postgresql://", DAGSTER_PG_SCHEME, 1)


def set_up_instance(env: dict[str, str]) -> None:
    """A deployment's one set-up step on a new Postgres database, before any run (docs/scaling-out.md): opening the
    instance creates its tables, which two runs started at once on an empty database both try to create (one fails:
    `type "job_ticks" already exists`), and setting the `warehouse` pool's limit avoids Dagster 1.13 creating it on
    first use with an insert-then-update that fails the same way (dagster-io/dagster#33552)."""
    dagster = Path(sys.executable).with_name("dagster")
    subprocess.run([dagster, "instance", "concurrency", "set", "warehouse", "1"], env=env, check=True)


def start_workers(count: int, env: dict[str, str], broker: str, log_dir: Path) -> list[subprocess.Popen]:
    """`count` Celery workers started as docs/scaling-out.md starts them, returned once each answers a ping: transcend's
    app (dagster-celery's tasks, acknowledged once run), the broker in Celery's own variables, one step at a time (a
    month's parse has processes of its own). Their logs are `worker<N>.log` in `log_dir`."""
    from celery import Celery

    celery = Path(sys.executable).with_name("celery")
    command = [celery, "-A", "transcend_pipeline.celery_worker", "worker", "--pool", "solo", "-Q", "dagster"]
    command += ["--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    env = {**env, "CELERY_BROKER_URL": broker, "CELERY_RESULT_BACKEND": celery_result_backend(broker)}
    logs = [log_dir / f"worker{index}.log" for index in range(1, count + 1)]
    workers = []
    for index, log in enumerate(logs, start=1):
        with log.open("w") as output:
            name = ["-n", f"transcend{index}@%h"]
            workers.append(subprocess.Popen([*command, *name], cwd=REPO_ROOT, env=env, stdout=output, stderr=output))
    app = Celery(broker=broker)
    deadline = time.monotonic() + WORKERS_TIMEOUT_S
    while len(app.control.ping(timeout=1.0)) < count:
        if time.monotonic() > deadline:
            for worker in workers:
                stop_process(worker, signal.SIGTERM)
            raise RuntimeError("workers did not start:\n" + "\n".join(log.read_text()[-3000:] for log in logs))
    return workers


def materialize_in_background(
    selection: str, month: str, env: dict[str, str], config: str | None = None
) -> subprocess.Popen:
    """`dagster asset materialize` of `selection` for `month`, as a user launches it from a shell: a run process
    that hands each step to the executor of `env` (dagster-celery's, with $TRANSCEND_CELERY_BROKER)."""
    dagster = Path(sys.executable).with_name("dagster")
    command = [dagster, "asset", "materialize", "-m", "transcend_pipeline.definitions", "--select", selection]
    command += ["--partition", f"{month}-01", *(["--config-json", config] if config else [])]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    """The `data` of a GraphQL request to the Dagster webserver at `url`, as the UI sends it; fails on errors."""
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


LOCATION_LOADED = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def _location_loaded(url: str) -> None:
    """Raises until the webserver answers and has loaded workspace.yaml's code location."""
    (entry,) = graphql(url, LOCATION_LOADED)["workspaceOrError"]["locationEntries"]
    loaded = entry["locationOrLoadError"] or {}
    if entry["loadStatus"] != "LOADED" or loaded.get("__typename") != "RepositoryLocation":
        raise RuntimeError(f"code location not loaded yet: {entry}")


@dataclass(frozen=True)
class DagsterServices:
    """A running `dagster-webserver` (its URL) and `dagster-daemon`, and where each writes its log."""

    url: str
    webserver: subprocess.Popen
    daemon: subprocess.Popen
    log_dir: Path

    def assert_running(self) -> None:
        """Fails, with its log, if either has exited."""
        for name, process in (("webserver", self.webserver), ("daemon", self.daemon)):
            if process.poll() is not None:
                log = (self.log_dir / f"{name}.log").read_text()[-5000:]
                raise RuntimeError(f"dagster {name} exited with {process.returncode}:\n{log}")


@contextmanager
def dagster_webserver_and_daemon(env: dict[str, str], log_dir: Path) -> Iterator[DagsterServices]:
    """`dagster-webserver` and `dagster-daemon run` on the repository's workspace.yaml, as docs/scaling-out.md deploys
    them: the UI to launch backfills, the daemon to run them (its backfill loop submits the runs, its run queue
    launches them). Both read the instance of $DAGSTER_HOME in `env`, and each loads the definitions in a code
    server of its own, whose run processes inherit `env`. Yielded once the webserver has loaded the code location;
    both are stopped by process id after. Their logs are `webserver.log` and `daemon.log` in `log_dir`."""
    bin_dir = Path(sys.executable).parent
    daemon_processes: list[subprocess.Popen] = []
    webserver_processes: list[subprocess.Popen] = []

    def launch(name: str, command: list, processes: list[subprocess.Popen]) -> subprocess.Popen:
        with (log_dir / f"{name}.log").open("w") as output:
            processes.append(subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT))
        return processes[-1]

    def start_webserver() -> str:
        (port,) = free_ports(1)
        command = [bin_dir / "dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
        url = f"http://127.0.0.1:{port}"
        _wait_until_ready(
            launch("webserver", command, webserver_processes), log_dir / "webserver.log", lambda: _location_loaded(url)
        )
        return url

    try:
        launch("daemon", [bin_dir / "dagster-daemon", "run", "-w", "workspace.yaml"], daemon_processes)
        url = _start_on_free_ports(start_webserver, webserver_processes, signal.SIGTERM)
        services = DagsterServices(url, webserver_processes[-1], daemon_processes[-1], log_dir)
        services.assert_running()
        yield services
    finally:
        _stop_processes(webserver_processes + daemon_processes, signal.SIGTERM)
