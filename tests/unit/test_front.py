"""The Host-checking front (stackctl/front.py) in process, against a socket server standing for
the backend: what it forwards, what it never forwards, and its bounds."""

from __future__ import annotations

import socket
import socketserver
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from servicekit.loopback_host import HostRule, LoopbackHostMiddleware
from stackctl.front import Front, FrontSettings, create_app
from tests.standin import StandIn, serving


class Backend(socketserver.BaseRequestHandler):
    """Records each request as received; answers per ``server.mode``."""

    server: StandIn

    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.request.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            body += self.request.recv(65536)
        self.server.seen.append((head, body))
        if self.server.mode == "silent":
            self.server.stop.wait(30)
            return
        answer = b"stored " + str(len(body)).encode()
        self.request.sendall(
            b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Backend: yes\r\n"
            b"Keep-Alive: timeout=5\r\nConnection: keep-alive, X-Backend-Hop\r\n"
            b"X-Backend-Hop: 1\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer
        )


@pytest.fixture
def backend() -> Iterator[StandIn]:
    with serving(StandIn(Backend, "answer")) as server:
        yield server


def client_of(backend: StandIn, **settings: object) -> TestClient:
    upstream = backend.url
    app = create_app(FrontSettings(upstream=upstream, **settings), HostRule())  # type: ignore[arg-type]
    return TestClient(app, base_url="http://127.0.0.1:16686")


def test_it_forwards_under_the_prefix_without_hop_by_hop_fields(backend: StandIn) -> None:
    with client_of(backend, upstream_path_prefix="/s3cret/") as client:
        response = client.post(
            "/api/x%2Fy?a=1&b=%20",
            content=b"z" * 300_000,
            headers={
                "Connection": "keep-alive, X-Secret-Hop",
                "X-Secret-Hop": "1",
                "Proxy-Authorization": "Basic x",
                "X-Kept": "yes",
            },
        )
    assert response.status_code == 201 and response.text == "stored 300000"
    assert response.headers["x-backend"] == "yes"
    assert "x-backend-hop" not in response.headers and "keep-alive" not in response.headers
    head, body = backend.seen[0]
    request_line, *fields = head.split(b"\r\n")
    assert request_line == b"POST /s3cret/api/x%2Fy?a=1&b=%20 HTTP/1.1"
    names = {field.split(b":")[0].lower() for field in fields}
    assert b"x-kept" in names
    assert not names & {b"x-secret-hop", b"proxy-authorization"}
    assert b"host: 127.0.0.1:%d" % backend.server_address[1] in head.lower()
    assert body == b"z" * 300_000


def test_a_foreign_host_reaches_nothing(backend: StandIn) -> None:
    with client_of(backend) as client:
        response = client.get("/api/services", headers={"Host": "rebind.attacker.example"})
    assert response.status_code == 421
    assert backend.seen == []


def test_a_silent_backend_is_a_504_by_the_deadline(backend: StandIn) -> None:
    backend.mode = "silent"
    with client_of(backend, timeout_seconds=0.5) as client:
        started = time.monotonic()
        response = client.get("/api/services")
    assert response.status_code == 504
    assert time.monotonic() - started < 10


def test_an_absent_backend_is_a_502() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        app = LoopbackHostMiddleware(Front(f"http://127.0.0.1:{port}"), HostRule())
        with TestClient(app, base_url="http://127.0.0.1") as client:
            assert client.get("/").status_code == 502


def test_one_exchange_over_the_cap_gets_503_at_once(backend: StandIn) -> None:
    front = Front(backend.url, max_concurrent_requests=2)
    front.active = 2  # two exchanges under way
    with TestClient(LoopbackHostMiddleware(front, HostRule()), base_url="http://127.0.0.1") as c:
        response = c.get("/")
    assert response.status_code == 503 and response.headers["retry-after"].isdigit()
    assert backend.seen == []
