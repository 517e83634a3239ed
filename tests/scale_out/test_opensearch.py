"""Jaeger on a real OpenSearch node, as `make up STORAGE=opensearch` runs it.

OpenSearch, Jaeger with jaeger/scale-out/config-opensearch.yaml, the collector and the four
services (stackctl, storage ``opensearch``). Orders' traces must be whole through the v3 API and
the analyzer, survive a Jaeger restart, land in the index of their day, and survive an
OpenSearch outage longer than Jaeger's own bulk retries: the collector's disk queue and
Jaeger's back-pressure must keep every span the collector acknowledged.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from stackctl.orders import order_body
from stackctl.ports import Ports
from stackctl.stack import ROOT, Stack
from stackctl.traces import fetch_trace, wait_for_trace
from tests.order_trace_contract import check_order_trace, from_jaeger
from tests.scale_out.conftest import reachable_dir, send_trace, wait_for_order_trace
from trace_analysis.sources.jaeger_api import JaegerClient

SPAN_INDEX = "jaeger-jaeger-span-"  # <OPENSEARCH_INDEX_PREFIX>-jaeger-span-<date>
# Longer than the bulk processor's own retries in Jaeger's OpenSearch writer (exponential
# backoff from 200 ms, given up past 10 s: about 12-25 s in all).
OUTAGE_S = 30


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with reachable_dir(request, "otel-order-stack-opensearch-") as base:
        stack = Stack(
            run_dir=base / "run",
            data_dir=base / "data",
            ports=Ports.free(),
            with_prometheus=False,
            storage="opensearch",
        )
        try:
            stack.up(timeout=180, report=lambda line: None)
            yield stack
        finally:
            stack.down(report=lambda line: None)


def place(stack: Stack, sku: str = "SKU123") -> tuple[str, str | None]:
    """(trace id, order id) of one order."""
    response = httpx.post(f"{stack.gateway_url}/api/orders", json=order_body(sku), timeout=30)
    assert response.status_code == (400 if sku == "OUT-OF-STOCK" else 201), response.text
    return response.json()["traceId"], response.json().get("orderId")


def indices(stack: Stack) -> dict[str, dict]:
    """Jaeger's span indices, by name: their settings."""
    answer = httpx.get(f"{stack.opensearch_url}/{SPAN_INDEX}*/_settings", timeout=10)
    answer.raise_for_status()
    return {name: body["settings"]["index"] for name, body in answer.json().items()}


@pytest.fixture(scope="module")
def orders(stack: Stack) -> dict[str, list[tuple[str, str | None]]]:
    placed = {"ok": [place(stack) for _ in range(3)], "failed": [place(stack, "OUT-OF-STOCK")]}
    for trace_id, order_id in placed["ok"]:
        wait_for_order_trace(stack.jaeger_url, trace_id, order_id, 30)
    return placed


def test_orders_are_whole_through_the_v3_api_and_the_analyzer(stack: Stack, orders) -> None:
    client = JaegerClient(stack.jaeger_url, api="v3")
    for trace_id, order_id in orders["ok"]:
        check_order_trace(from_jaeger(fetch_trace(stack.jaeger_url, trace_id)), order_id, 1)
        stored = client.trace(trace_id)
        assert stored is not None and len(stored.spans) == 15, trace_id
    [(failed, _)] = orders["failed"]
    wait_for_trace(stack.jaeger_url, failed, {"api-gateway", "inventory-service"})
    args = ["5000", "--lookback", "15m", "--jaeger-url", stack.jaeger_url, "--format", "json"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "analyze_traces.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"]["api"] == "v3"
    flagged = {t["trace_id"]: t for t in report["traces"]}
    assert set(flagged) == {failed}
    assert flagged[failed]["error_origin"]["service"] == "inventory-service"


def test_a_jaeger_restart_keeps_the_traces(stack: Stack, orders) -> None:
    jaeger = stack.process("jaeger")
    jaeger.stop()
    jaeger.start()
    jaeger.wait_healthy(time.monotonic() + 60)
    client = JaegerClient(stack.jaeger_url, api="v3")
    for trace_id, _ in orders["ok"]:
        stored = client.trace(trace_id)
        assert stored is not None and len(stored.spans) == 15, trace_id


def test_spans_go_to_the_index_of_their_day_and_old_days_are_dropped_whole(
    stack: Stack, orders
) -> None:
    """Daily rollover (OPENSEARCH_INDEX_DATE_LAYOUT 2006-01-02): a span lands in the index of
    its start time's UTC day, with the configured shards and replicas; deleting a day's index
    (what an ISM retention policy does) drops exactly that day's traces."""
    old_day = datetime.now(UTC) - timedelta(days=2)
    old = send_trace(stack.ports.otlp_grpc, start_ns=int(old_day.timestamp() * 1e9))
    wait_for_trace(stack.jaeger_url, old, {"api-gateway"}, timeout=30)
    now = datetime.now(UTC)
    recent = {f"{SPAN_INDEX}{now - timedelta(days=d):%Y-%m-%d}" for d in (0, 1)}  # past midnight
    old_index = f"{SPAN_INDEX}{old_day:%Y-%m-%d}"
    found = indices(stack)
    assert old_index in found and set(found) - {old_index} <= recent, sorted(found)
    for settings in found.values():
        assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("3", "0")
    httpx.delete(f"{stack.opensearch_url}/{old_index}", timeout=10).raise_for_status()
    assert fetch_trace(stack.jaeger_url, old) is None
    for trace_id, _ in orders["ok"]:
        assert fetch_trace(stack.jaeger_url, trace_id) is not None


def test_an_opensearch_outage_loses_no_acknowledged_span(stack: Stack) -> None:
    node = stack.process("opensearch")
    node.kill()
    try:
        during = [place(stack) for _ in range(5)]  # the services' exports are acknowledged
        time.sleep(OUTAGE_S)
        with pytest.raises(httpx.HTTPStatusError):  # Jaeger has no store to read from
            fetch_trace(stack.jaeger_url, during[0][0])
    finally:
        node.start()
        node.wait_healthy(time.monotonic() + 120)
    for trace_id, order_id in during:
        wait_for_order_trace(stack.jaeger_url, trace_id, order_id, 90)
