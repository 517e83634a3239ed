"""Fault injection from env, baggage and the admin API: applied, bounded and visible in spans."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, StatusCode

from servicekit.faults import FaultInjector, FaultSpecError, parse_faults
from tests.unit.conftest import ORDER, build_stack

pytestmark = pytest.mark.anyio
TOKEN = "s3cret-token"


def test_parse_faults() -> None:
    faults = parse_faults("latency:200-400:0.5|error:503|timeout:100:0")
    assert [(f.kind, f.value, f.probability) for f in faults] == [
        ("latency", "200-400", 0.5),
        ("error", "503", 1.0),
        ("timeout", "100", 0.0),
    ]
    assert parse_faults("") == []
    for bad in ("latency", "slow:100", "latency:abc", "error:503:2", "latency:1;DROP"):
        with pytest.raises(FaultSpecError, match="bad fault"):
            parse_faults(bad)


def test_seed_makes_a_run_reproducible() -> None:
    def run(seed: int) -> list[bool]:
        injector = FaultInjector("svc", parse_faults("error:500:0.5"), seed=seed)
        return [bool(injector.firing("/x")) for _ in range(50)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert 10 < sum(run(7)) < 40


def _server_span(stack, service: str, trace_id: str):  # type: ignore[no-untyped-def]
    return next(
        s
        for s in stack.spans(trace_id)
        if s.resource.attributes["service.name"] == service and s.kind is SpanKind.SERVER
    )


async def test_standing_latency_fault_from_settings(tmp_path: Path) -> None:
    stack = build_stack(tmp_path, overrides={"inventory-service": {"faults": "latency:300"}})
    started = time.perf_counter()
    response = await stack.client.post("/api/orders", json=ORDER)
    assert response.status_code == 201
    assert time.perf_counter() - started >= 0.3
    span = _server_span(stack, "inventory-service", response.json()["traceId"])
    assert span.attributes["fault.injected"] is True
    assert (span.attributes["fault.kind"], span.attributes["fault.value"]) == ("latency", "300")
    assert span.end_time - span.start_time >= 300_000_000
    await stack.client.aclose()


async def test_baggage_fault_hits_only_that_request(tmp_path: Path) -> None:
    stack = build_stack(tmp_path, overrides={"api-gateway": {"admin_token": TOKEN}})
    before = stack.available("SKU123")
    headers = {"baggage": "fault.order-service=error:503", "authorization": f"Bearer {TOKEN}"}
    failed = await stack.client.post("/api/orders", json=ORDER, headers=headers)
    assert failed.status_code == 503
    span = _server_span(stack, "order-service", failed.json()["traceId"])
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["fault.kind"] == "error"
    assert stack.available("SKU123") == before, "reservation released"
    assert (await stack.client.post("/api/orders", json=ORDER)).status_code == 201
    junk = {**headers, "baggage": "fault.order-service=" + "x" * 5000}
    assert (await stack.client.post("/api/orders", json=ORDER, headers=junk)).status_code == 201
    await stack.client.aclose()


class RecordingTransport(httpx.ASGITransport):
    """Keeps the ``baggage`` header of every request the gateway sends to one service."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app=app)
        self.baggage: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.baggage.append(request.headers.get("baggage"))
        token = otel_context.attach(otel_context.Context())
        try:
            return await super().handle_async_request(request)
        finally:
            otel_context.detach(token)


@pytest.mark.parametrize(
    ("lines", "authorization", "forwarded"),
    [
        (["a=1,fault.order-service=error:503,b=2"], None, {"a=1", "b=2"}),
        (["a=1", "fault%2Eorder-service=error:503;p=1", "b=2"], None, {"a=1", "b=2"}),
        (["fault.inventory-service=latency:1"], None, None),
        (["a=1", "fault.x=latency:1"], f"Bearer {TOKEN}", {"a=1", "fault.x=latency%3A1"}),
        (["a=1", "fault.x=latency:1"], f"Bearer {TOKEN}-not", {"a=1"}),
    ],
    ids=["anonymous", "encoded key, two lines", "only faults", "authorised", "wrong token"],
)
async def test_the_gateway_forwards_baggage_without_anonymous_fault_members(
    tmp_path: Path, lines: list[str], authorization: str | None, forwarded: set[str] | None
) -> None:
    transports: dict[str, RecordingTransport] = {}

    def wrap(name: str, app: FastAPI) -> httpx.AsyncBaseTransport:
        transports[name] = RecordingTransport(app)
        return transports[name]

    stack = build_stack(tmp_path, wrap=wrap, overrides={"api-gateway": {"admin_token": TOKEN}})
    headers = [("baggage", line) for line in lines]
    if authorization:
        headers.append(("authorization", authorization))
    response = await stack.client.post("/api/orders", json=ORDER, headers=headers)
    assert response.status_code == 201, response.text
    [sent] = transports["inventory-service"].baggage[:1]
    assert (set(sent.split(",")) if sent else None) == forwarded
    await stack.client.aclose()


async def test_admin_routes_are_disabled_without_a_token(tmp_path: Path) -> None:
    """No token: the routes do not exist, so no method (not even an unserved one, which would
    answer 405 with an ``Allow`` naming them) tells a caller they are there."""
    stack = build_stack(tmp_path)
    inventory = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stack.apps["inventory-service"]), base_url="http://i"
    )
    for method in ("GET", "POST", "DELETE", "PATCH", "PUT", "HEAD"):
        response = await stack.client.request(method, "/api/admin/faults/inventory-service")
        assert response.status_code == 404, (method, response.headers)
        response = await inventory.request(method, "/admin/faults")
        assert response.status_code == 404, (method, response.headers)
    await inventory.aclose()
    await stack.client.aclose()


async def test_admin_faults_through_the_gateway(tmp_path: Path) -> None:
    token = {"admin_token": TOKEN}
    overrides = {name: token for name in ("api-gateway", "inventory-service", "order-service")}
    stack = build_stack(tmp_path, overrides=overrides)
    url = "/api/admin/faults/inventory-service"
    fault = {"kind": "error", "value": "500", "duration_seconds": 60}
    assert (await stack.client.post(url, json=fault)).status_code == 401
    assert (await stack.client.post(url, json={"junk": 1})).status_code == 401
    wrong = {"authorization": "Bearer nope"}
    assert (await stack.client.post(url, json=fault, headers=wrong)).status_code == 401

    auth = {"authorization": f"Bearer {TOKEN}"}
    added = await stack.client.post(url, json=fault, headers=auth)
    assert added.status_code == 201, added.text
    listed = (await stack.client.get(url, headers=auth)).json()
    assert [f["kind"] for f in listed["faults"]] == ["error"]
    response = await stack.client.post("/api/orders", json=ORDER)
    assert response.status_code == 502
    assert response.json()["service"] == "inventory-service"

    bad = await stack.client.post(url, json={"kind": "explode", "value": "1"}, headers=auth)
    assert bad.status_code == 422
    cleared = await stack.client.delete(url, headers=auth)
    assert cleared.json()["cleared"] == 1
    assert (await stack.client.post("/api/orders", json=ORDER)).status_code == 201

    gateway_fault = {"kind": "latency", "value": "10", "duration_seconds": 0.2}
    gateway_url = "/api/admin/faults/api-gateway"
    resp = await stack.client.post(gateway_url, json=gateway_fault, headers=auth)
    assert resp.status_code == 201
    time.sleep(0.25)
    listed = (await stack.client.get(gateway_url, headers=auth)).json()
    assert listed["faults"] == [], "the fault cleared itself after duration_seconds"
    await stack.client.aclose()


async def test_a_gateway_fault_never_locks_out_the_admin_routes(tmp_path: Path) -> None:
    """An error (or timeout) fault on api-gateway must not hit /api/admin, or it could not be
    listed or cleared until it expired."""
    stack = build_stack(tmp_path, overrides={"api-gateway": {"admin_token": TOKEN}})
    auth = {"authorization": f"Bearer {TOKEN}"}
    url = "/api/admin/faults/api-gateway"
    fault = {"kind": "error", "value": "503", "duration_seconds": 60}
    assert (await stack.client.post(url, json=fault, headers=auth)).status_code == 201
    assert (await stack.client.post("/api/orders", json=ORDER)).status_code == 503
    listed = await stack.client.get(url, headers=auth)
    assert listed.status_code == 200 and len(listed.json()["faults"]) == 1
    cleared = await stack.client.delete(url, headers=auth)
    assert cleared.status_code == 200 and cleared.json()["cleared"] == 1
    assert (await stack.client.post("/api/orders", json=ORDER)).status_code == 201
    await stack.client.aclose()


async def test_timeout_fault_outlasts_the_callers_timeout(tmp_path: Path) -> None:
    """A timeout fault hangs past the gateway's downstream timeout: the gateway answers 504
    naming the service, in about its timeout, not the hang."""
    overrides = {
        "inventory-service": {"faults": "timeout:0", "fault_timeout_ms": 5000},
        "api-gateway": {"downstream_timeout_seconds": 0.2},
    }
    stack = build_stack(tmp_path, overrides=overrides)
    started = time.perf_counter()
    response = await stack.client.post("/api/orders", json=ORDER)
    assert response.status_code == 504, response.text
    assert response.json()["service"] == "inventory-service"
    assert time.perf_counter() - started < 2
    await stack.client.aclose()
