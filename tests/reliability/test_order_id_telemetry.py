"""Whoever reads Jaeger cannot read orders: the order id, the only credential a lookup needs, is
in no span of the order, of its lookups or of its compensations, and Jaeger's tag search by it
finds nothing; its hash (``order.id_hash``) finds the order's traces.

Every order id here joins the leak scan (test_telemetry_leaks.py), which then looks for it in
every span and log line of the run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from servicekit.identifiers import new_order_id
from servicekit.redaction import ORDER_ID_HASH, REDACTED_ID, order_id_hash
from stackctl.stack import Stack
from stackctl.traces import StoredTrace, fetch_trace
from tests.reliability.conftest import ADMIN_TOKEN, SENT_SECRETS, record
from tests.reliability.support import inventory_db, order_body, query, wait_until


@pytest.fixture(scope="module")
def client(shared_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_stack.gateway_url, timeout=15) as client:
        yield client


def holding(trace: StoredTrace, secret: str) -> list[str]:
    found = []
    for span in trace.spans:
        fields = list(span.get("tags", []))
        fields += [field for log in span.get("logs", []) for field in log.get("fields", [])]
        found += [
            f"{trace.service_of(span)} {span['operationName']}: {field['key']}"
            for field in fields
            if secret.lower() in str(field.get("value", "")).lower()
        ]
    return found


def stored(stack: Stack, trace_id: str, spans: int, having: str = "") -> StoredTrace:
    """The trace once Jaeger holds ``spans`` of its spans, one of them named ``having`` (each
    service exports on its own, so a trace arrives in parts)."""

    def whole() -> StoredTrace | None:
        trace = fetch_trace(stack.jaeger_url, trace_id)
        if trace is None or len(trace.spans) < spans:
            return None
        return trace if not having or having in trace.operations else None

    return wait_until(whole, 20, f"trace {trace_id} in Jaeger", interval=0.3)


def search(stack: Stack, service: str, key: str, value: str) -> set[str]:
    """Trace ids Jaeger's tag search finds for ``key=value``."""
    response = httpx.get(
        f"{stack.jaeger_url}/api/traces",
        params={"service": service, "lookback": "1h", "tags": json.dumps({key: value})},
        timeout=10,
    )
    response.raise_for_status()
    return {trace["traceID"] for trace in response.json().get("data") or []}


def test_no_span_holds_the_order_id_and_its_hash_finds_the_order(
    shared_stack: Stack, client: httpx.Client
) -> None:
    placed = client.post(
        "/api/orders", json=order_body(), headers={"Idempotency-Key": new_order_id()}
    )
    assert placed.status_code == 201
    order_id, order_trace = placed.json()["orderId"], placed.json()["traceId"]
    SENT_SECRETS.add(order_id)
    lookups = {}
    for path in (
        f"/api/orders/{order_id}",
        f"/api/orders/{order_id}/",  # no route takes it: 404, the path as sent
        f"/api/orders/{order_id}?copy={order_id}",
        f"/api/orders/{new_order_id()}",  # not found
    ):
        response = client.get(path)
        assert response.status_code in (200, 404), response.text
        lookups[path] = response.headers["traceresponse"].split("-")[1]
    assert client.get(f"/api/orders/{order_id}").json()["orderId"] == order_id

    traces = [stored(shared_stack, order_trace, 15)]
    lookup_span = "GET /api/orders/{order_id}"  # the gateway's, where the route matched
    traces += [
        stored(shared_stack, trace_id, 1, lookup_span if path.count("/") == 3 else "")
        for path, trace_id in lookups.items()
    ]
    found = [item for trace in traces for item in holding(trace, order_id)]
    assert not found, found
    [lookup] = [s for s in traces[1].spans if s["operationName"] == lookup_span]
    tags = StoredTrace.tags(lookup)
    assert tags["url.path"] == f"/api/orders/{REDACTED_ID}"
    assert tags[ORDER_ID_HASH] == order_id_hash(order_id)

    # A reader of Jaeger alone: the id is not searchable; the hash (given the id) is.
    assert not search(shared_stack, "api-gateway", "order.id", order_id)
    by_hash = search(shared_stack, "api-gateway", ORDER_ID_HASH, order_id_hash(order_id))
    assert {order_trace, lookups[f"/api/orders/{order_id}"]} <= by_hash
    assert search(shared_stack, "order-service", ORDER_ID_HASH, order_id_hash(order_id))
    record("order id in telemetry", spans_holding_it=0, traces_found_by_hash=len(by_hash))


def test_a_compensated_order_keeps_its_id_out_of_spans(
    shared_stack: Stack, client: httpx.Client
) -> None:
    """order-service fails the store: the gateway releases the reservation (keyed by the order
    id, which the client never sees) in a ``compensate_reservation`` span."""
    headers = {
        "Authorization": f"Bearer {ADMIN_TOKEN}",  # the admin's fault baggage acts
        "baggage": "fault.order-service=error:503",
    }
    failed = client.post("/api/orders", json=order_body("SKU456"), headers=headers)
    assert failed.status_code == 503, failed.text
    released = query(
        inventory_db(shared_stack),
        "SELECT reservation_id FROM reservations WHERE status = 'released'"
        " ORDER BY created_at DESC LIMIT 1",
    )
    [(order_id,)] = released
    SENT_SECRETS.add(order_id)
    # The gateway's spans (the compensation among them) and the callees' arrive in separate
    # exports: wait for the compensation itself, not for a count the callees alone may reach.
    trace = stored(shared_stack, failed.json()["traceId"], 8, "compensate_reservation")
    assert not holding(trace, order_id)
    assert search(
        shared_stack, "inventory-service", "inventory.reservation_id_hash", order_id_hash(order_id)
    )
