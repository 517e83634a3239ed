"""DNS rebinding: the loopback-only pages answer a loopback Host (or an allowed name) only.

Against the real trace browser, the real front of Jaeger's query API and the real front of the
collector's OTLP/HTTP receiver (stackctl/front.py), on the shared stack: every foreign name or
address gets 421 and every malformed, absent or repeated Host 400, with no data; loopback names
in all their forms are answered; what stands behind the fronts (Jaeger's own query port, its
gRPC port, the receiver's socket) gives a page nothing either.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stackctl.orders import order_body
from stackctl.ports import Ports
from stackctl.process import ManagedProcess
from stackctl.stack import Stack
from tests.reliability.support import place, trace_browser, wait_until

FOREIGN = [
    "rebind.attacker.example:{port}",
    "rebind.attacker.example",
    "REBIND.ATTACKER.EXAMPLE.:{port}",
    "localhost.attacker.example:{port}",
    "127.0.0.1.attacker.example:{port}",
    "127.0.0.1.nip.io:{port}",
    "10.0.0.1:{port}",
    "0.0.0.0:{port}",
    "167772161:{port}",  # 10.0.0.1 as one number
    "0x0a.0.0.1",
    "[::ffff:10.0.0.1]:{port}",
    "[::]:{port}",
]
MALFORMED = [
    "user@127.0.0.1:{port}",
    "127.0.0.1@rebind.attacker.example:{port}",
    "127.0.0.1:{port}:{port}",
    "127.0.0.1:99999",
    "::1",
    "[::1%25lo]:{port}",
    "1.2.3.4.5",
]
LOOPBACK = [
    "127.0.0.1:{port}",
    "127.0.0.1",
    "localhost:{port}",
    "LocalHost.:{port}",
    "traces.localhost:{port}",
    "127.0.0.2:{port}",
    "2130706433:{port}",
    "0x7f.1:{port}",
    "0177.0.0.1:{port}",
    "[::1]:{port}",
    "[::ffff:127.0.0.1]:{port}",
]


def raw(port: int, head: bytes, body: bytes = b"", timeout: float = 30) -> tuple[int, bytes]:
    """Send one request as written (``head`` without its final empty line); the status and the
    whole answer (the connection is asked to close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + b"Connection: close\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    assert match, f"not an HTTP answer: {answer[:200]!r}"
    return int(match.group(1)), answer


def get(port: int, path: str, host: str | None, version: str = "1.1") -> tuple[int, bytes]:
    line = f"GET {path} HTTP/{version}\r\n".encode()
    return raw(port, line + (f"Host: {host}\r\n".encode() if host is not None else b""))


@pytest.fixture(scope="module")
def order(shared_stack: Stack) -> str:
    """A trace id, stored in Jaeger."""
    with httpx.Client(base_url=shared_stack.gateway_url, timeout=30) as client:
        outcome = place(client, order_body(sku="SKU123"))
    assert outcome.status == 201, outcome.data
    trace_id = outcome.trace_id
    assert trace_id
    url = f"{shared_stack.jaeger_url}/api/traces/{trace_id}"
    wait_until(lambda: httpx.get(url, timeout=10).status_code == 200, 30, "the trace in Jaeger")
    return trace_id


@pytest.fixture(scope="module")
def browser(shared_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The real trace browser on the shared stack's Jaeger, allowing one operator name."""
    with trace_browser(
        shared_stack.jaeger_url,
        tmp_path_factory.mktemp("browser"),
        LOOPBACK_ALLOWED_HOSTS="traces.example, 192.0.2.7",
    ) as url:
        yield int(url.rsplit(":", 1)[1])


def surfaces(stack: Stack, browser: int, trace_id: str) -> list[tuple[str, int, str]]:
    """(what, port, path) of every GET a rebinding page would want."""
    jaeger = stack.ports.jaeger_query
    return [
        ("browser list", browser, "/?lookback=15m"),
        ("browser trace", browser, f"/trace/{trace_id}"),
        ("browser health", browser, "/healthz"),
        ("Jaeger v1 services", jaeger, "/api/services"),
        ("Jaeger v1 trace", jaeger, f"/api/traces/{trace_id}"),
        ("Jaeger v3 services", jaeger, "/api/v3/services"),
        ("Jaeger v3 trace", jaeger, f"/api/v3/traces/{trace_id}"),
    ]


# What each Host form gets from every surface: 421 and no data for another name, 400 for a
# malformed Host, the page itself for loopback.
EXPECTED = (
    [(f, 421) for f in FOREIGN] + [(f, 400) for f in MALFORMED] + [(f, 200) for f in LOOPBACK]
)


@pytest.mark.parametrize(("form", "expected"), EXPECTED)
def test_each_host_form_gets_its_answer_from_every_surface(
    shared_stack: Stack, browser: int, order: str, form: str, expected: int
) -> None:
    for what, port, path in surfaces(shared_stack, browser, order):
        status, answer = get(port, path, form.format(port=port))
        assert status == expected, (what, form, answer[:300])
        if expected != 200:
            assert order.encode() not in answer and b"api-gateway" not in answer, (what, form)
        elif "trace" in what:
            assert order.encode() in answer, (what, form)


@pytest.mark.parametrize(
    "head",
    [
        "GET {path} HTTP/1.1\r\n",  # no Host
        "GET {path} HTTP/1.0\r\n",  # no Host, HTTP/1.0
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: rebind.attacker.example\r\n",
        "GET {path} HTTP/1.1\r\nHost: rebind.attacker.example\r\nHost: 127.0.0.1:{port}\r\n",
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: 127.0.0.1:{port}\r\n",
    ],
    ids=["absent", "absent-http1.0", "loopback-then-foreign", "foreign-then-loopback", "twice"],
)
def test_an_absent_or_repeated_host_is_a_bad_request(
    shared_stack: Stack, browser: int, order: str, head: str
) -> None:
    for what, port, path in surfaces(shared_stack, browser, order):
        status, answer = raw(port, head.format(path=path, port=port).encode())
        assert status == 400, (what, head, answer[:300])
        assert order.encode() not in answer and b"api-gateway" not in answer, (what, head)


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("rebind.attacker.example:{port}", 421),
        ("10.0.0.1", 421),
        ("user@127.0.0.1:{port}", 400),
        ("127.0.0.1:{port}", 200),
        ("localhost", 200),
    ],
)
def test_an_absolute_form_target_is_judged_by_its_authority(
    shared_stack: Stack, browser: int, order: str, authority: str, expected: int
) -> None:
    """RFC 9112, 3.2.2: the target's authority counts, whatever Host says."""
    for what, port, path in surfaces(shared_stack, browser, order):
        target = f"http://{authority.format(port=port)}{path}"
        head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
        status, answer = raw(port, head)
        assert status == expected, (what, target, answer[:300])
        if expected != 200:
            assert order.encode() not in answer and b"api-gateway" not in answer


def test_the_operators_names_are_answered_and_links_are_not_built_from_host(
    browser: int, order: str
) -> None:
    for host in ("traces.example", f"TRACES.EXAMPLE.:{browser}", "192.0.2.7", "3221225991"):
        status, answer = get(browser, f"/trace/{order}", host)
        assert status == 200 and order.encode() in answer, host
    status, answer = get(browser, f"/trace/{order}", f"traces.example:{browser}")
    links = re.findall(rb'href="([^"]*)"', answer)
    assert links and not [link for link in links if b"traces.example" in link], links
    assert all(link.startswith((b"/", b"#", b"?")) for link in links), links  # relative
    assert f'href="/trace/{order}/json"'.encode() in answer
    status, _ = get(browser, "/", "x.traces.example")
    assert status == 421


def otlp_span(service: str, trace_id: str) -> bytes:
    now = time.time_ns()
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                    },
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": trace_id,
                                    "spanId": secrets.token_hex(8),
                                    "name": "GET /rebound",
                                    "kind": 2,
                                    "startTimeUnixNano": str(now - 1_000_000),
                                    "endTimeUnixNano": str(now),
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    ).encode()


def post_span(port: int, host: str, body: bytes, target: str = "/v1/traces") -> int:
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Origin: http://rebind.attacker.example\r\nContent-Length: {len(body)}\r\n"
    ).encode()
    return raw(port, head, body)[0]


def test_the_collector_takes_spans_from_a_loopback_host_only(shared_stack: Stack) -> None:
    """Spans sent with foreign and malformed Hosts are refused and never stored; one sent with
    a loopback Host, after them, is (so the refused ones had every chance to arrive first)."""
    port = shared_stack.ports.otlp_http
    refused = {}
    for form in [*FOREIGN, *MALFORMED]:
        trace_id = secrets.token_hex(16)
        status = post_span(port, form.format(port=port), otlp_span("rebound", trace_id))
        assert status in (400, 421), form
        refused[form] = trace_id
    absolute = secrets.token_hex(16)
    target = f"http://rebind.attacker.example:{port}/v1/traces"
    assert post_span(port, f"127.0.0.1:{port}", otlp_span("rebound", absolute), target) == 421
    refused["absolute form"] = absolute
    accepted = secrets.token_hex(16)
    assert post_span(port, f"localhost:{port}", otlp_span("loopback-sender", accepted)) == 200
    jaeger = shared_stack.jaeger_url
    wait_until(
        lambda: httpx.get(f"{jaeger}/api/traces/{accepted}", timeout=10).status_code == 200,
        30,
        "the span sent with a loopback Host, in Jaeger",
    )
    for form, trace_id in refused.items():
        assert httpx.get(f"{jaeger}/api/traces/{trace_id}", timeout=10).status_code == 404, form
    services = httpx.get(f"{jaeger}/api/services", timeout=10).json()["data"]
    assert "rebound" not in services


def test_what_stands_behind_the_fronts_gives_a_page_nothing(
    shared_stack: Stack, order: str
) -> None:
    """Jaeger's own query port answers a page only a placeholder that does not name its base
    path; its gRPC port speaks HTTP/2 only; the receiver is a socket only its user opens."""
    base_path = (shared_stack.run_dir / "jaeger-query-base-path").read_text().strip()
    internal = shared_stack.ports.jaeger_query_internal
    for path in ("/", "/api/services", f"/api/traces/{order}", "/api/v3/services", "/search"):
        status, answer = get(internal, path, f"rebind.attacker.example:{internal}")
        assert b"api-gateway" not in answer and order.encode() not in answer, path
        assert base_path.encode() not in answer and base_path.strip("/").encode() not in answer
    # the front reaches it under the base path: the same request through the front has data
    status, answer = get(shared_stack.ports.jaeger_query, "/api/services", "127.0.0.1")
    assert status == 200 and b"api-gateway" in answer

    with socket.create_connection(("127.0.0.1", shared_stack.ports.jaeger_query_grpc), 10) as s:
        s.sendall(b"GET /api/services HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        s.settimeout(5)
        try:
            answer = s.recv(65536)
        except OSError:  # reset, or silent
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 2") and b"api-gateway" not in answer

    sock = Path(shared_stack.otlp_http_socket)
    mode = sock.stat().st_mode
    assert stat.S_ISSOCK(mode) and not mode & (stat.S_IWGRP | stat.S_IWOTH)
    assert sock.stat().st_uid == os.getuid()
    listening = {int(line.split()[1].rsplit(":", 1)[1], 16) for line in _listening()}
    assert shared_stack.ports.otlp_http in listening  # the front
    base = (shared_stack.run_dir / "jaeger-query-base-path").stat().st_mode
    assert not base & (stat.S_IRWXG | stat.S_IRWXO)
    # nor is the base path written where logs are read and shared
    for log in (shared_stack.run_dir / "logs").glob("*.log"):
        assert base_path.strip("/") not in log.read_text(errors="replace"), log.name


def _listening() -> list[str]:
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        rows += [r for r in Path(table).read_text().splitlines()[1:] if r.split()[3] == "0A"]
    return rows


def test_an_allowed_name_reaches_jaeger_through_a_front(
    shared_stack: Stack, tmp_path: Path
) -> None:
    """``LOOPBACK_ALLOWED_HOSTS`` opens a front to the operator's names, and to no other."""
    port = Ports.free().jaeger_query
    base_path = (shared_stack.run_dir / "jaeger-query-base-path").read_text().strip()
    env = {
        "FRONT_LISTEN": f"127.0.0.1:{port}",
        "FRONT_UPSTREAM": shared_stack.ports.url("jaeger_query_internal"),
        "FRONT_UPSTREAM_PATH_PREFIX": base_path,
        "LOOPBACK_ALLOWED_HOSTS": "jaeger.example",
    }
    front = ManagedProcess(
        "front", [sys.executable, "-m", "stackctl.front"], f"tcp://127.0.0.1:{port}", tmp_path, env
    )
    front.start()
    try:
        front.wait_healthy(time.monotonic() + 60)
        status, answer = get(port, "/api/services", f"JAEGER.example:{port}")
        assert status == 200 and b"api-gateway" in answer
        status, answer = get(port, "/api/services", f"jaeger.example.attacker.example:{port}")
        assert status == 421 and b"api-gateway" not in answer
    finally:
        front.stop()
