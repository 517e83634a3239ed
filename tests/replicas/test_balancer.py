"""HAProxy's retry rules, on Debian's haproxy with the config `make up REPLICAS=N` writes, in
front of two small HTTP servers of the test's own: a request is sent again, to another
replica, only when no connection could be made; one that reached a replica is never resent.
(Given ``retry-on all-retryable-errors`` with ``option http-buffer-request``, HAProxy does
resend it, and the first test fails.)
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servicekit.catalog import SERVICES
from stackctl import haproxy
from stackctl.ports import free_ports
from tests.unit.test_stackctl_replicas import replicated


class Replica:
    """A listener on a free port that counts the requests it reads and either answers 200 or,
    ``drop=True``, closes the connection without an answer (a replica dying mid-request)."""

    def __init__(self, port: int, drop: bool) -> None:
        self.port, self.drop, self.requests = port, drop, 0
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                data = conn.recv(65536)
                if data.startswith(b"GET /readyz"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    continue
                self.requests += 1
                if not self.drop:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def close(self) -> None:
        if not self.stopped.is_set():
            self.stopped.set()
            self.thread.join()
            self.sock.close()


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[tuple[int, list[Replica]]]:
    """HAProxy on a free port in front of two replicas, both in (their checks passed); the
    first drops every request it reads."""
    front, *ports = free_ports(3)
    replicas = [Replica(ports[0], drop=True), Replica(ports[1], drop=False)]
    haproxy.write_config(tmp_path, {"api-gateway": (front, ports)})
    proc = subprocess.Popen(haproxy.command(tmp_path), stdout=subprocess.DEVNULL)
    try:
        names = ["api-gateway-1", "api-gateway-2"]
        haproxy.wait_all_up(tmp_path, names, time.monotonic() + 15)
        yield front, replicas
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for replica in replicas:
            replica.close()


def test_a_request_that_reached_a_replica_is_never_resent(balancer) -> None:
    front, (dying, healthy) = balancer
    outcomes = []
    for _ in range(4):  # round robin: at least two reach the dying replica
        try:
            response = httpx.post(f"http://127.0.0.1:{front}/api/orders", json={}, timeout=10)
            outcomes.append(response.status_code)
        except httpx.TransportError:
            outcomes.append(0)
    assert dying.requests >= 1
    assert dying.requests + healthy.requests == 4, "each POST read once, by one replica"
    assert outcomes.count(200) == healthy.requests


def test_a_refused_connection_is_retried_on_another_replica(balancer) -> None:
    """The first replica stops listening; before its checks take it out (two failures a
    second apart), the requests round-robin gives it are refused and go to the other."""
    front, (gone, healthy) = balancer
    gone.close()
    statuses = [
        httpx.post(f"http://127.0.0.1:{front}/api/orders", json={}, timeout=10).status_code
        for _ in range(4)
    ]
    assert statuses == [200] * 4
    assert healthy.requests == 4 and gone.requests == 0


def test_debian_haproxy_accepts_the_config(tmp_path: Path) -> None:
    stack = replicated(tmp_path, replicas=3)
    fronts = {
        spec.name: (stack.ports.of(spec), stack.replica_ports[spec.name]) for spec in SERVICES
    }
    path = haproxy.write_config(stack.run_dir, fronts)
    checked = subprocess.run(
        [str(haproxy.binary()), "-c", "-f", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
