"""analyze_traces.py against the real Jaeger: it flags exactly the slow and failing orders.

Slow orders are made slow in inventory-service only, per request, with a W3C baggage fault
(servicekit/faults.py); out-of-stock orders fail in inventory-service. The analyzer must flag
exactly those trace ids among the orders of this test and blame inventory-service for both.
"""

from __future__ import annotations

import json
import subprocess
import sys

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
        [sys.executable, str(ROOT / "analyze_traces.py"), *args, "--jaeger-url", stack.jaeger_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_flags_exactly_the_slow_and_failed_orders(stack: Stack, orders) -> None:
    result = analyze(stack, str(THRESHOLD_MS), "--lookback", "15m", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
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
