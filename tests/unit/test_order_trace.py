"""One order, one complete trace: the telemetry contract, asserted in process."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from tests.unit.conftest import ORDER, InProcessStack

pytestmark = pytest.mark.anyio
SERVICES = {"api-gateway", "inventory-service", "order-service", "notification-service"}


def _service(span) -> str:  # type: ignore[no-untyped-def]
    return span.resource.attributes["service.name"]


async def test_order_is_created_with_trace_id(stack: InProcessStack) -> None:
    response = await stack.client.post("/api/orders", json=ORDER)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "confirmed"
    assert body["total"] == 100.0
    assert body["notification"] == "queued"
    assert len(body["traceId"]) == 32
    assert body["traceId"] in response.headers["traceresponse"]

    fetched = await stack.client.get(f"/api/orders/{body['orderId']}")
    assert fetched.status_code == 200
    assert fetched.json()["total"] == 100.0
    stock = await stack.client.get("/api/inventory/SKU123")
    assert stock.json() == {"sku": "SKU123", "available": 1_000_000 - 2}


async def test_one_order_is_one_complete_trace(stack: InProcessStack) -> None:
    response = await stack.client.post("/api/orders", json=ORDER)
    trace_id = response.json()["traceId"]
    spans = stack.spans(trace_id)
    assert {_service(s) for s in spans} == SERVICES
    assert len(stack.spans()) == len(spans), "every span belongs to the order's trace"

    ids = {s.context.span_id for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1
    root = roots[0]
    assert _service(root) == "api-gateway" and root.kind is SpanKind.SERVER
    assert all(s.parent.span_id in ids for s in spans if s.parent is not None), "no orphan"

    process = [s for s in spans if s.name == "process_order"]
    assert len(process) == 1
    attrs = process[0].attributes
    assert attrs["order.id"] == response.json()["orderId"]
    assert attrs["order.item_count"] == 2
    assert attrs["order.total"] == 100.0
    assert attrs["customer.id"] == "1"
    assert _service(process[0]) == "order-service"

    send = [s for s in spans if s.name == "send_notification"]
    assert len(send) == 1 and _service(send[0]) == "notification-service"


async def test_spans_follow_stable_semantic_conventions(stack: InProcessStack) -> None:
    trace_id = (await stack.client.post("/api/orders", json=ORDER)).json()["traceId"]
    spans = stack.spans(trace_id)
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    clients = [s for s in spans if s.kind is SpanKind.CLIENT and "url.full" in s.attributes]
    assert {_service(s) for s in servers} == SERVICES
    for span in servers:
        assert span.attributes["http.request.method"] == "POST"
        assert "http.route" in span.attributes
        assert span.attributes["http.response.status_code"] in (201, 202)
    assert {s.attributes["url.full"].split("/", 3)[3] for s in clients} == {
        "inventory/reserve",
        "orders",
        "notify",
    }
    for span in clients:
        assert "server.address" in span.attributes
        assert "http.response.status_code" in span.attributes
    db_spans = [s for s in spans if s.attributes.get("db.system.name") == "sqlite"]
    assert {_service(s) for s in db_spans} >= {"inventory-service", "order-service"}


async def test_resource_attributes(stack: InProcessStack) -> None:
    await stack.client.post("/api/orders", json=ORDER)
    for span in stack.spans():
        attrs = span.resource.attributes
        for key in ("service.version", "deployment.environment.name", "service.instance.id"):
            assert attrs.get(key), key


async def test_out_of_stock_is_a_400_and_an_inventory_error_span(stack: InProcessStack) -> None:
    order = {**ORDER, "items": [{"sku": "OUT-OF-STOCK", "quantity": 1, "price": 5.0}]}
    response = await stack.client.post("/api/orders", json=order)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["sku"] == "OUT-OF-STOCK"
    assert len(problem["traceId"]) == 32

    spans = stack.spans(problem["traceId"])
    inventory = [
        s for s in spans if _service(s) == "inventory-service" and s.kind is SpanKind.SERVER
    ]
    assert len(inventory) == 1
    span = inventory[0]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["inventory.sku"] == "OUT-OF-STOCK"
    events = {e.name for e in span.events}
    assert {"stock.insufficient", "exception"} <= events
    gateway_root = next(s for s in spans if s.parent is None)
    assert gateway_root.status.status_code is not StatusCode.ERROR, "a 4xx is not a server error"
    assert not [s for s in spans if s.name == "process_order"], "no order stored"


async def test_no_email_in_any_span(stack: InProcessStack) -> None:
    await stack.client.post("/api/orders", json=ORDER)
    await stack.client.post("/api/orders", json={**ORDER, "email": "not-an-email"})
    for span in stack.spans():
        values = [str(v) for v in span.attributes.values()]
        values += [str(v) for e in span.events for v in e.attributes.values()]
        assert not any("@" in v or "customer" in v for v in values), span.name


async def test_healthz_counts_finished_spans(stack: InProcessStack) -> None:
    await stack.client.post("/api/orders", json=ORDER)
    counted = 0
    for name, app in stack.apps.items():
        health = app.telemetry.counter.ended
        counted += health
        assert health > 0, name
    assert counted == len(stack.spans())
    body = (await stack.client.get("/healthz")).json()
    assert body["spans_ended"] == stack.apps["api-gateway"].telemetry.counter.ended
