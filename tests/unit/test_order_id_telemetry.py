"""The order id reads the order, so no span, span event or log line holds it: they hold its hash
(``order.id_hash``), and a URL that carries it has ``REDACTED`` in its place.

Every place an order id goes: the order's trace, a lookup (found, not found, a path no route
takes), the compensations (a release, a cancellation), a failed notification, the log lines.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from servicekit.identifiers import new_order_id
from servicekit.logs import configure_logging
from servicekit.redaction import (
    ORDER_ID_HASH,
    REDACTED_ID,
    RESERVATION_ID_HASH,
    order_id_hash,
    redact_order_ids,
)
from tests.unit.conftest import ORDER, InProcessStack, ProcessBoundaryTransport, build_stack

pytestmark = pytest.mark.anyio


def texts(span: ReadableSpan) -> Iterator[str]:
    yield span.name
    for key, value in (span.attributes or {}).items():
        yield f"{key}={value}"
    for event in span.events:
        for key, value in (event.attributes or {}).items():
            yield f"{event.name} {key}={value}"
    yield str(span.status.description)


def holding(spans: list[ReadableSpan], secret: str) -> list[str]:
    return [f"{s.name}: {t}" for s in spans for t in texts(s) if secret.lower() in t.lower()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/api/orders/0123456789abcdef0123456789ABCDEF", f"/api/orders/{REDACTED_ID}"),
        ("http://h:1/orders/" + "a" * 32, f"http://h:1/orders/{REDACTED_ID}"),
        ("id=" + "b" * 32 + "&x=1", f"id={REDACTED_ID}&x=1"),
        ("/api/orders/" + "c" * 32 + "/extra", f"/api/orders/{REDACTED_ID}/extra"),
        ("/x/" + "d" * 64, "/x/" + "d" * 64),  # a sha256, not an order id
        ("/api/orders/" + "e" * 31, "/api/orders/" + "e" * 31),
        ("/api/orders/SKU123", "/api/orders/SKU123"),
    ],
)
def test_redact_order_ids(text: str, expected: str) -> None:
    assert redact_order_ids(text) == expected


def test_order_id_hash_is_stable_and_not_the_id() -> None:
    order_id = new_order_id()
    assert order_id_hash(order_id) == order_id_hash(order_id)
    assert len(order_id_hash(order_id)) == 32 and order_id not in order_id_hash(order_id)


async def test_an_order_and_its_lookups_keep_the_id_out_of_spans(stack: InProcessStack) -> None:
    placed = await stack.client.post("/api/orders", json=ORDER)
    assert placed.status_code == 201
    order_id = placed.json()["orderId"]
    for url in (
        f"/api/orders/{order_id}",
        f"/api/orders/{order_id.upper()}",  # a client may change its case: not found
        f"/api/orders/{order_id}/",  # no route: the path as sent, redacted
        f"/api/orders/{order_id}?ref={order_id}",
        f"/api/orders/{new_order_id()}",
    ):
        assert (await stack.client.get(url)).status_code in (200, 404)
    spans = stack.spans()
    assert not holding(spans, order_id)
    ref = order_id_hash(order_id)
    lookups = [s for s in spans if s.name == "GET /api/orders/{order_id}"]
    assert [s.attributes["url.path"] for s in lookups[:1]] == [f"/api/orders/{REDACTED_ID}"]
    assert lookups[0].attributes[ORDER_ID_HASH] == ref, "a lookup is found by the order's hash"
    calls = [s for s in spans if s.name == "GET /orders/{order_id}" and s.kind is SpanKind.CLIENT]
    assert calls and all(str(s.attributes["url.full"]).endswith(REDACTED_ID) for s in calls)
    assert calls[0].attributes[ORDER_ID_HASH] == ref
    served = [s for s in spans if s.name == "GET /orders/{order_id}" and s.kind is SpanKind.SERVER]
    assert served[0].attributes["url.path"] == f"/orders/{REDACTED_ID}"
    by_ref = {s.name for s in spans if (s.attributes or {}).get(ORDER_ID_HASH) == ref}
    assert {"POST /api/orders", "process_order", "send_notification"} <= by_ref


class DisconnectAfterCommit(ProcessBoundaryTransport):
    """order-service stores the first order, then its connection breaks: the gateway releases
    the stock, and cancels the order (it may have been stored) before the next one."""

    broke = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.method == "POST" and not self.broke:
            self.broke = True
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return response


async def test_compensations_and_failures_keep_the_id_out_of_spans_and_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def wrap(name: str, app: FastAPI) -> httpx.AsyncBaseTransport:
        if name == "order-service":
            return DisconnectAfterCommit(app=app)
        return ProcessBoundaryTransport(app=app)

    stack = build_stack(tmp_path, wrap)
    configure_logging("api-gateway", "INFO")
    try:
        failed = await stack.client.post("/api/orders", json=ORDER)
        assert (await stack.client.post("/api/orders", json=ORDER)).status_code == 201
    finally:
        logging.getLogger().handlers.clear()
    assert failed.status_code == 503, failed.text
    db = stack.apps["inventory-service"].state.store.db
    query = "SELECT reservation_id FROM reservations WHERE status = 'released'"
    with db.read(traced=False) as cur:
        [order_id] = [row["reservation_id"] for row in cur.execute(query)]
    spans = stack.spans()
    names = {s.name for s in spans}
    assert {"compensate_reservation", "compensate_order", "DELETE /orders/{order_id}"} <= names
    assert not holding(spans, order_id)
    [release] = [s for s in spans if s.name == "compensate_reservation"]
    assert release.attributes[RESERVATION_ID_HASH] == order_id_hash(order_id)
    [cancel] = [s for s in spans if s.name == "compensate_order"]
    assert cancel.attributes[ORDER_ID_HASH] == order_id_hash(order_id)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert lines and not [line for line in lines if order_id in json.dumps(line)]
    await stack.client.aclose()


async def test_a_failed_notification_logs_the_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def wrap(name: str, app: FastAPI) -> httpx.AsyncBaseTransport:
        if name == "notification-service":
            return httpx.MockTransport(lambda request: httpx.Response(503))
        return ProcessBoundaryTransport(app=app)

    stack = build_stack(tmp_path, wrap)
    configure_logging("api-gateway", "INFO")
    try:
        placed = await stack.client.post("/api/orders", json=ORDER)
    finally:
        logging.getLogger().handlers.clear()
    assert placed.status_code == 201 and placed.json()["notification"] == "failed"
    order_id = placed.json()["orderId"]
    err = capsys.readouterr().err
    assert order_id_hash(order_id) in err and order_id not in err
    assert not holding(stack.spans(), order_id)
    await stack.client.aclose()
