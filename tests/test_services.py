"""The test servers themselves: a server whose port another process takes before it binds it starts again on fresh
ports, rather than failing the test that needed it (CI once lost a run to RabbitMQ's distribution port)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from urllib.parse import urlsplit

import pytest
import services


@pytest.mark.distributed
@pytest.mark.parametrize(
    ("server", "find_binaries", "taken_index"),
    [
        (services.postgres_server, services.postgres_bin_dir, 0),
        (services.redis_server, services.redis_binary, 0),
        (services.rabbitmq_server, services.rabbitmq_binary, 1),  # the Erlang distribution port, as in CI
        (services.object_store_server, lambda: None, 0),
    ],
    ids=["postgres", "redis", "rabbitmq-distribution", "object-store"],
)
def test_a_server_whose_port_is_taken_starts_again_on_free_ones(
    server: Callable[[], AbstractContextManager[services.Service]],
    find_binaries: Callable[[], object],
    taken_index: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services.require_installed(find_binaries)
    free_ports = services.free_ports
    picks: list[list[int]] = []

    with socket.socket() as taker:
        taker.bind(("127.0.0.1", 0))  # bound, not listening: as an outgoing connection holds its local port
        taken = taker.getsockname()[1]

        def first_pick_taken(count: int) -> list[int]:
            ports = free_ports(count)
            if not picks:
                ports[taken_index] = taken
            picks.append(ports)
            return ports

        monkeypatch.setattr(services, "free_ports", first_pick_taken)
        with server() as running:
            port = urlsplit(running.url).port
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass  # it serves

    assert len(picks) == 2, picks
    assert picks[0][taken_index] == taken and taken not in picks[1]
    assert port == picks[1][0]
