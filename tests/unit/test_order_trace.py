"""One order, one complete trace: the telemetry contract, asserted in process."""

from __future__ import annotations

import pytest

from tests.order_trace_contract import check_order_trace, check_out_of_stock_trace, from_sdk
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
    assert stock.json() == {"sku": "SKU123", "available": 1_000_000 - 2, "price": 50.0}


async def test_one_order_is_one_complete_trace(stack: InProcessStack) -> None:
    response = await stack.client.post("/api/orders", json=ORDER)
    spans = stack.spans(response.json()["traceId"])
    assert len(stack.spans()) == len(spans), "every span belongs to the order's trace"
    check_order_trace(from_sdk(spans), response.json()["orderId"], item_count=2)
    [process] = [s for s in spans if s.name == "process_order"]
    assert process.attributes["order.total"] == 100.0


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
    spans = from_sdk(stack.spans(problem["traceId"]))
    check_out_of_stock_trace(spans, "OUT-OF-STOCK")
    [inventory] = [s for s in spans if s.service == "inventory-service" and s.kind == "server"]
    assert "exception" in inventory.events


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
