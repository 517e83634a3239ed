"""analyze_traces.py against the real Jaeger: it flags exactly the slow and failing orders.

Slow orders are made slow in inventory-service only, per request, with a W3C baggage fault
(servicekit/faults.py); out-of-stock orders fail in inventory-service. The analyzer must flag
exactly those trace ids among the orders of this test and blame inventory-service for both:
through Jaeger's v3 API, through its v1 routes, and through a proxy that makes the v1 search
routes unreachable, as they are on a Jaeger after v2.20 (only ``/api/traces/{id}`` stays).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from stackctl.orders import order_body
from stackctl.stack import ROOT, Stack
from stackctl.traces import wait_for_trace
from tests.e2e.conftest import ADMIN_TOKEN

ALL = {"api-gateway", "inventory-service", "order-service", "notification-service"}
# Fault baggage acts only for a caller with the admin token (the gateway drops it otherwise).
SLOW_BAGGAGE = {
    "baggage": "fault.inventory-service=latency:400",
    "authorization": f"Bearer {ADMIN_TOKEN}",
}
THRESHOLD_MS = 250


def place(stack: Stack, sku: str = "SKU123", headers: dict[str, str] | None = None) -> str:
    response = httpx.post(
        f"{stack.gateway_url}/api/orders", json=order_body(sku), headers=headers, timeout=30
    )
    assert response.status_code == (400 if sku == "OUT-OF-STOCK" else 201), response.text
    return response.json()["traceId"]


@pytest.fixture(scope="module")
def orders(stack: Stack) -> dict[str, list[str]]:
    place(stack)  # warm-up: the first order after start-up can be slow on its own
    placed = {
        "fast": [place(stack) for _ in range(4)],
        "slow": [place(stack, headers=SLOW_BAGGAGE) for _ in range(2)],
        "failed": [place(stack, "OUT-OF-STOCK") for _ in range(2)],
    }
    for trace_id in placed["fast"] + placed["slow"]:
        wait_for_trace(stack.jaeger_url, trace_id, ALL, frozenset({"send_notification"}))
    for trace_id in placed["failed"]:
        wait_for_trace(stack.jaeger_url, trace_id, {"api-gateway", "inventory-service"})
    return placed


def analyze(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "analyze_traces.py"), "--jaeger-url", stack.jaeger_url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


V1_SEARCH = ("/api/traces", "/api/services", "/api/operations")


@pytest.fixture(scope="module")
def without_v1_search(stack: Stack) -> Iterator[str]:
    """The real Jaeger behind a proxy that answers 404 to the v1 search routes (the URL)."""

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in V1_SEARCH or path.startswith(("/api/services/", "/api/operations")):
                status, content_type, body = 404, "text/plain", b"404 page not found\n"
            else:
                answer = httpx.get(stack.jaeger_url + self.path, timeout=30)
                status, body = answer.status_code, answer.content
                content_type = answer.headers.get("content-type", "application/json")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("route", ["auto", "v1", "v1 search unreachable"])
def test_flags_exactly_the_slow_and_failed_orders(
    stack: Stack, orders, without_v1_search: str, route: str
) -> None:
    args = [str(THRESHOLD_MS), "--lookback", "15m", "--format", "json"]
    if route == "v1":
        args += ["--api", "v1"]
    if route == "v1 search unreachable":
        args += ["--jaeger-url", without_v1_search]  # the last --jaeger-url wins
    result = analyze(stack, *args)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"]["api"] == ("v1" if route == "v1" else "v3")
    ours = {trace_id for ids in orders.values() for trace_id in ids}
    flagged = {t["trace_id"]: t for t in report["traces"] if t["trace_id"] in ours}
    assert set(flagged) == set(orders["slow"]) | set(orders["failed"])
    for trace_id in orders["slow"]:
        trace = flagged[trace_id]
        assert trace["slow"] and not trace["error"]
        assert trace["latency_ms"] > 400
        assert trace["culprit"]["service"] == "inventory-service"
        assert trace["culprit"]["share"] > 0.5
        assert {(f["service"], f["kind"]) for f in trace["faults"]} == {
            ("inventory-service", "latency")
        }
    for trace_id in orders["failed"]:
        trace = flagged[trace_id]
        assert trace["error"] and not trace["slow"]
        assert trace["error_origin"]["service"] == "inventory-service"
        assert "OUT-OF-STOCK" in trace["error_origin"]["message"]


def test_v1_api_is_refused_where_its_search_is_gone(stack: Stack, without_v1_search: str) -> None:
    result = analyze(stack, "200", "--api", "v1", "--jaeger-url", without_v1_search)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "answered HTTP 404 to /api/traces: 404 page not found" in result.stderr


@pytest.mark.parametrize("route", ["auto", "v1 search unreachable", "v1"])
def test_trace_explains_a_live_trace(
    stack: Stack, orders, without_v1_search: str, route: str
) -> None:
    slow, failed = orders["slow"][0], orders["failed"][0]
    args = ["--trace", slow, "--trace", failed, "--format", "json"]
    if route == "v1":
        args += ["--api", "v1"]  # by id: the v1 route Jaeger keeps
    if route == "v1 search unreachable":
        args += ["--jaeger-url", without_v1_search]
    result = analyze(stack, *args)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"]["api"] == ("v1" if route == "v1" else "v3")
    slow_trace, failed_trace = report["traces"]
    assert [slow_trace["trace_id"], failed_trace["trace_id"]] == [slow, failed]
    assert slow_trace["culprit"]["service"] == "inventory-service"
    assert {row["service"] for row in slow_trace["waterfall"]} == ALL
    on_path = [row["service"] for row in slow_trace["waterfall"] if row["critical_path"]]
    assert on_path[0] == "api-gateway" and "inventory-service" in on_path
    assert failed_trace["error_origin"]["service"] == "inventory-service"
    assert "OUT-OF-STOCK" in failed_trace["error_origin"]["message"]


def test_trace_in_the_terminal_and_an_unknown_id(stack: Stack, orders) -> None:
    slow = orders["slow"][0]
    result = analyze(stack, "--trace", slow)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Trace {slow}  api-gateway POST /api/orders")
    assert any(line.startswith("* api-gateway POST /api/orders") for line in lines)
    assert any(line.startswith("culprit: inventory-service") for line in lines)
    unknown = analyze(stack, "--trace", "0123456789abcdef0123456789abcdef")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr == (
        "analyze_traces.py: error: trace 0123456789abcdef0123456789abcdef not found in "
        f"Jaeger at {stack.jaeger_url} (API v3)\n"
    )


def test_demo_shows_each_order_through_the_trace_view(
    stack: Stack, orders, capsys: pytest.CaptureFixture[str]
) -> None:
    from stackctl.__main__ import show_trace

    failed = orders["failed"][0]
    assert show_trace(stack.jaeger_url, failed) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Trace {failed}  api-gateway POST /api/orders")
    assert "first failure: inventory-service POST /inventory/reserve" in out
    # Client spans by the route they call, statements by operation and table.
    assert "api-gateway POST /inventory/reserve " in out
    assert "inventory-service SELECT reservations " in out


def test_fail_on_turns_findings_into_exit_code_1(stack: Stack, orders) -> None:
    result = analyze(stack, str(THRESHOLD_MS), "--lookback", "15m", "--fail-on", "any")
    assert result.returncode == 1, result.stderr
    for trace_id in orders["slow"] + orders["failed"]:
        assert trace_id in result.stdout


def test_unreachable_jaeger_is_exit_2_with_one_clear_line() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "analyze_traces.py"), "100"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"JAEGER_URL": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "127.0.0.1:9" in result.stderr
