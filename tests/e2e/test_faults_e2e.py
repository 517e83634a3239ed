"""Fault injection on the real stack: through the gateway's admin API and per-request baggage,
then read back from Jaeger, where every affected span must say which fault hit it.

Every test clears the run-time faults of every service afterwards, so the other e2e tests run
against a stack without faults.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stackctl.orders import order_body
from stackctl.stack import Stack
from stackctl.traces import StoredTrace, wait_for_trace
from tests.e2e.conftest import ADMIN_TOKEN

SERVICES = ("api-gateway", "inventory-service", "order-service", "notification-service")
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def faults(gateway: httpx.Client) -> Iterator[httpx.Client]:
    """The gateway client; every service's run-time faults are cleared after the test."""
    try:
        yield gateway
    finally:
        for service in SERVICES:
            cleared = gateway.delete(f"/api/admin/faults/{service}", headers=AUTH)
            assert cleared.status_code == 200, cleared.text


def inject(client: httpx.Client, service: str, **fault: Any) -> dict[str, Any]:
    response = client.post(f"/api/admin/faults/{service}", json=fault, headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()


def server_span(trace: StoredTrace, service: str) -> dict[str, Any]:
    [span] = [
        s
        for s in trace.spans
        if trace.service_of(s) == service and StoredTrace.tags(s).get("span.kind") == "server"
    ]
    return span


def events(span: dict[str, Any]) -> set[str]:
    return {f["value"] for log in span["logs"] for f in log["fields"] if f["key"] == "event"}


def assert_fault(span: dict[str, Any], kind: str, value: str) -> None:
    tags = StoredTrace.tags(span)
    assert tags.get("fault.injected") is True, tags
    assert (tags["fault.kind"], tags["fault.value"]) == (kind, value)
    assert "fault.injected" in events(span)


def assert_no_fault(span: dict[str, Any]) -> None:
    assert "fault.injected" not in StoredTrace.tags(span)


def test_admin_routes_need_the_bearer_token(faults: httpx.Client) -> None:
    url = "/api/admin/faults/inventory-service"
    fault = {"kind": "error", "value": "500", "duration_seconds": 5}
    assert faults.post(url, json=fault).status_code == 401
    assert faults.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert faults.get(url, headers=AUTH).json()["faults"] == []


def test_latency_fault_through_the_gateway_admin_api(stack: Stack, faults: httpx.Client) -> None:
    added = inject(faults, "inventory-service", kind="latency", value="300", duration_seconds=60)
    assert added["service"] == "inventory-service" and added["source"] == "admin"
    listed = faults.get("/api/admin/faults/inventory-service", headers=AUTH).json()
    assert [(f["kind"], f["value"]) for f in listed["faults"]] == [("latency", "300")]

    t0 = time.monotonic()
    response = faults.post("/api/orders", json=order_body())
    assert response.status_code == 201, response.text
    assert time.monotonic() - t0 >= 0.3

    trace = wait_for_trace(
        stack.jaeger_url, response.json()["traceId"], set(SERVICES), frozenset({"process_order"})
    )
    inventory = server_span(trace, "inventory-service")
    assert_fault(inventory, "latency", "300")
    assert inventory["duration"] >= 300_000  # microseconds
    for service in ("api-gateway", "order-service", "notification-service"):
        assert_no_fault(server_span(trace, service))


def test_error_fault_fails_the_order_and_marks_the_span(stack: Stack, faults: httpx.Client) -> None:
    inject(faults, "order-service", kind="error", value="503", duration_seconds=60)
    response = faults.post("/api/orders", json=order_body())
    assert response.status_code == 503, response.text
    assert response.json()["service"] == "order-service"

    trace = wait_for_trace(
        stack.jaeger_url,
        response.json()["traceId"],
        {"api-gateway", "inventory-service", "order-service"},
        frozenset({"compensate_reservation"}),
    )
    order = server_span(trace, "order-service")
    assert_fault(order, "error", "503")
    tags = StoredTrace.tags(order)
    assert tags["otel.status_code"] == "ERROR"
    assert tags["http.response.status_code"] == 503
    assert "process_order" not in trace.operations, "the fault answered before the route ran"


def test_runtime_fault_clears_itself_after_its_duration(faults: httpx.Client) -> None:
    inject(faults, "notification-service", kind="error", value="500", duration_seconds=1)
    assert len(faults.get("/api/admin/faults/notification-service", headers=AUTH).json()["faults"])
    time.sleep(1.2)
    assert faults.get("/api/admin/faults/notification-service", headers=AUTH).json()["faults"] == []


def test_baggage_fault_hits_only_that_request_in_that_service(
    stack: Stack, faults: httpx.Client
) -> None:
    """The client asks for the fault in W3C baggage; the gateway propagates it downstream
    (for a caller with the admin token: it drops an anonymous caller's fault members)."""
    baggage = {"baggage": "fault.order-service=latency:250", **AUTH}
    slow = faults.post("/api/orders", json=order_body(), headers=baggage)
    normal = faults.post("/api/orders", json=order_body())
    assert slow.status_code == normal.status_code == 201

    operations = frozenset({"process_order", "send_notification"})
    slow_trace = wait_for_trace(stack.jaeger_url, slow.json()["traceId"], set(SERVICES), operations)
    order = server_span(slow_trace, "order-service")
    assert_fault(order, "latency", "250")
    assert order["duration"] >= 250_000
    for service in ("api-gateway", "inventory-service", "notification-service"):
        assert_no_fault(server_span(slow_trace, service))

    normal_trace = wait_for_trace(
        stack.jaeger_url, normal.json()["traceId"], set(SERVICES), operations
    )
    for service in SERVICES:
        assert_no_fault(server_span(normal_trace, service))
