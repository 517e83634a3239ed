"""The order trace, written once: what one placed order's trace holds, in every test tier.

``tests/unit/test_order_trace.py`` checks it in process (spans from an ``InMemorySpanExporter``);
``tests/e2e/test_order_traces.py`` checks it after OTLP export, the collector and Jaeger's
storage. Both turn their spans into :class:`ContractSpan` and call :func:`check_order_trace`.
docs/architecture.md describes the same contract in prose.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from servicekit.catalog import SERVICE_NAMES
from servicekit.redaction import ORDER_ID_HASH, RESERVATION_ID_HASH, order_id_hash
from stackctl.traces import StoredTrace

# (span kind, span name) -> how many one order of one line makes: 15 spans in four services.
# Client spans are named by the route they call (url.template), database spans by operation and
# table (db.operation.name, db.collection.name).
ORDER_SPANS: Counter[tuple[str, str]] = Counter(
    {
        ("server", "POST /api/orders"): 1,  # api-gateway, the root
        ("client", "POST /inventory/reserve"): 1,  # the gateway's calls
        ("client", "POST /orders"): 1,
        ("client", "POST /notify"): 1,
        ("server", "POST /inventory/reserve"): 1,
        ("server", "POST /orders"): 1,
        ("internal", "process_order"): 1,  # order-service
        ("server", "POST /notify"): 1,
        ("internal", "send_notification"): 1,  # notification-service, in the background
        ("client", "SELECT reservations"): 1,  # one span per statement
        ("client", "UPDATE stock"): 1,
        ("client", "INSERT reservations"): 1,
        ("client", "INSERT orders"): 1,
        ("client", "SELECT orders"): 1,
        ("client", "INSERT notifications"): 1,
    }
)
# The gateway's client spans, by the path they call.
CALLED_PATHS = {"inventory/reserve", "orders", "notify"}
# Services whose database statements show in the order's trace.
DB_SERVICES = {"inventory-service", "order-service", "notification-service"}


@dataclass(frozen=True)
class ContractSpan:
    """One span, as either tier sees it."""

    service: str
    kind: str  # server, client, internal
    name: str
    span_id: str
    parent_id: str | None
    attributes: Mapping[str, Any]
    events: frozenset[str]
    error: bool


def from_sdk(spans: Iterable[ReadableSpan]) -> list[ContractSpan]:
    """Spans an in-process test exported."""
    return [
        ContractSpan(
            service=str(span.resource.attributes["service.name"]),
            kind=span.kind.name.lower(),
            name=span.name,
            span_id=format(span.context.span_id, "016x"),
            parent_id=format(span.parent.span_id, "016x") if span.parent else None,
            attributes=dict(span.attributes or {}),
            events=frozenset(event.name for event in span.events),
            error=span.status.status_code is StatusCode.ERROR,
        )
        for span in spans
    ]


def from_jaeger(trace: StoredTrace) -> list[ContractSpan]:
    """Spans of a trace as Jaeger stored it."""
    out = []
    for span in trace.spans:
        tags = StoredTrace.tags(span)
        out.append(
            ContractSpan(
                service=trace.service_of(span),
                kind=str(tags.get("span.kind", "internal")),
                name=span["operationName"],
                span_id=span["spanID"],
                parent_id=StoredTrace.parent_id(span),
                attributes=tags,
                events=frozenset(
                    field["value"]
                    for log in span.get("logs", [])
                    for field in log["fields"]
                    if field["key"] == "event"
                ),
                error=tags.get("otel.status_code") == "ERROR",
            )
        )
    return out


def check_order_trace(
    spans: list[ContractSpan], order_id: str, item_count: int, db_system: str = "sqlite"
) -> None:
    """One complete trace over the four services, with the spans and attributes an order makes.

    ``item_count`` is the order's total quantity; its total is checked by the caller.
    ``db_system``: the backend the services store in (``db.system.name``).
    """
    made = Counter((s.kind, s.name) for s in spans)
    assert made == ORDER_SPANS, f"extra {made - ORDER_SPANS}, missing {ORDER_SPANS - made}"
    assert {s.service for s in spans} == set(SERVICE_NAMES)
    assert len({s.span_id for s in spans}) == len(spans), "no duplicated span"
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id is None]
    assert len(roots) == 1, roots
    assert (roots[0].service, roots[0].kind) == ("api-gateway", "server")
    assert all(s.parent_id in ids for s in spans if s.parent_id is not None), "no orphan"
    assert not any(s.error for s in spans)
    # The order id reads the order: no span holds it, they hold its hash.
    held = [(s.name, k) for s in spans for k, v in s.attributes.items() if order_id in str(v)]
    assert not held, f"the order id is in {held}"
    ref = order_id_hash(order_id)

    [process] = [s for s in spans if s.name == "process_order"]
    assert process.service == "order-service"
    assert process.attributes[ORDER_ID_HASH] == ref
    assert process.attributes["order.item_count"] == item_count
    assert process.attributes["customer.id"] == "1"
    [send] = [s for s in spans if s.name == "send_notification"]
    assert send.service == "notification-service"
    [notify] = [s for s in spans if (s.kind, s.name) == ("server", "POST /notify")]
    assert send.parent_id == notify.span_id
    assert send.attributes[ORDER_ID_HASH] == ref
    [root] = roots
    assert root.attributes[ORDER_ID_HASH] == ref
    [reserve] = [s for s in spans if (s.kind, s.name) == ("server", "POST /inventory/reserve")]
    assert reserve.attributes[RESERVATION_ID_HASH] == ref
    assert send.attributes["notification.channel"]

    servers = [s for s in spans if s.kind == "server"]
    assert {s.service for s in servers} == set(SERVICE_NAMES)
    for span in servers:
        assert span.attributes["http.request.method"] == "POST"
        assert span.name == f"POST {span.attributes['http.route']}"
        assert span.attributes["http.response.status_code"] in (201, 202)
        assert ":" not in str(span.attributes["server.address"]), "the host alone, no port"
    clients = [s for s in spans if s.kind == "client"]
    calls = [s for s in clients if "url.full" in s.attributes]
    assert {str(s.attributes["url.full"]).split("/", 3)[3] for s in calls} == CALLED_PATHS
    for span in calls:
        assert span.service == "api-gateway"
        assert span.name == f"POST {span.attributes['url.template']}"
        assert isinstance(span.attributes["http.response.status_code"], int)
        [callee] = [s for s in servers if s.parent_id == span.span_id]
        assert callee.attributes["http.route"] == span.attributes["url.template"]
        for key in ("server.address", "server.port"):
            assert span.attributes[key] == callee.attributes[key], "both ends name one server"
    db = [s for s in clients if s not in calls]
    assert {s.service for s in db} == DB_SERVICES
    for span in db:
        assert span.attributes["db.system.name"] == db_system
        operation = span.attributes["db.operation.name"]
        assert span.name == f"{operation} {span.attributes['db.collection.name']}"
        assert str(span.attributes["db.query.text"]).upper().startswith(str(operation))


def check_out_of_stock_trace(spans: list[ContractSpan], sku: str) -> None:
    """The refusal is on inventory-service's server span; nothing was stored."""
    [inventory] = [s for s in spans if s.service == "inventory-service" and s.kind == "server"]
    assert inventory.error
    assert inventory.attributes["inventory.sku"] == sku
    assert "stock.insufficient" in inventory.events
    [root] = [s for s in spans if s.parent_id is None]
    assert not root.error, "a 4xx is not a server error"
    assert not [s for s in spans if s.name == "process_order"], "no order stored"
