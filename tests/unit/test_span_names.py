"""Span names and attributes per the semantic conventions (servicekit/semconv.py): client spans
by route template, database spans by operation and table, ``server.address`` without the port,
and no ``BackgroundTask`` span around ``send_notification``. The whole order trace is checked
in tests/unit/test_order_trace.py (tests/order_trace_contract.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.background import BackgroundTask

from servicekit.http_client import Downstream
from servicekit.redaction import ORDER_ID_HASH, order_id_hash
from servicekit.semconv import SqlSummary, host_and_port, split_server_address, summarize_sql
from servicekit.storage.sqlite import SqliteDatabase
from servicekit.telemetry import configure_process
from tests.unit.conftest import ORDER, InProcessStack

pytestmark = pytest.mark.anyio


@pytest.fixture
def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    configure_process()  # the stable conventions, as the services have them, whatever runs first
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_client_span_is_named_by_the_route_template_and_values_are_encoded(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    paths: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path)
        return httpx.Response(404)

    downstream = Downstream(
        "orders", "http://orders.test", 1.0, provider, httpx.MockTransport(answer)
    )
    response = await downstream.request("GET", "/orders/{order_id}", {"order_id": "a/b?c d"})
    await downstream.aclose()

    assert response.status_code == 404
    assert paths == [b"/orders/a%2Fb%3Fc%20d"], "each value stays one path segment"
    [span] = exporter.get_finished_spans()
    assert (span.kind, span.name) == (SpanKind.CLIENT, "GET /orders/{order_id}")
    assert span.attributes["url.template"] == "/orders/{order_id}"
    assert span.attributes["url.full"] == "http://orders.test/orders/a%2Fb%3Fc%20d"


async def test_a_template_parameter_without_a_value_is_refused(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    downstream = Downstream("orders", "http://orders.test", 1.0, provider, transport)
    with pytest.raises(KeyError, match="order_id"):
        await downstream.request("GET", "/orders/{order_id}")
    await downstream.aclose()
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize(
    ("statement", "summary"),
    [
        (
            "SELECT sku, quantity FROM reservations WHERE id = ?",
            SqlSummary("SELECT", "reservations"),
        ),
        ("  update stock SET available = 1", SqlSummary("UPDATE", "stock")),
        ("INSERT OR IGNORE INTO orders (a) VALUES (?)", SqlSummary("INSERT", "orders")),
        ('DELETE FROM "idempotency_keys" WHERE key = ?', SqlSummary("DELETE", "idempotency_keys")),
        ("SELECT * FROM main.orders", SqlSummary("SELECT", "main.orders")),
        ("SELECT 1", SqlSummary("SELECT", None)),
        ("", SqlSummary(None, None)),
    ],
)
def test_sql_summary(statement: str, summary: SqlSummary) -> None:
    assert summarize_sql(statement) == summary


def test_sql_span_name_falls_back_to_what_is_known() -> None:
    assert SqlSummary("SELECT", "stock").span_name("sqlite") == "SELECT stock"
    assert SqlSummary("SELECT", None).span_name("sqlite") == "SELECT"
    assert SqlSummary(None, None).span_name("sqlite") == "sqlite"


def _db_spans(
    tmp_path: Path, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> tuple[SqliteDatabase, InMemorySpanExporter]:
    provider, exporter = traced
    db = SqliteDatabase(tmp_path / "shop.db", "CREATE TABLE stock (sku TEXT PRIMARY KEY)", provider)
    return db, exporter


def test_statements_are_spans_named_by_operation_and_table(
    tmp_path: Path, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    db, exporter = _db_spans(tmp_path, traced)
    with db.transaction() as cur:
        cur.executemany("INSERT INTO stock (sku) VALUES (?)", [("a",), ("b",)])
        rows = cur.execute("SELECT sku FROM stock ORDER BY sku").fetchall()
    db.close()
    assert [row["sku"] for row in rows] == ["a", "b"]
    insert, select = exporter.get_finished_spans()  # BEGIN and COMMIT are not traced
    assert (insert.kind, insert.name, select.name) == (
        SpanKind.CLIENT,
        "INSERT stock",
        "SELECT stock",
    )
    assert dict(select.attributes or {}) == {
        "db.system.name": "sqlite",
        "db.namespace": "shop.db",
        "db.operation.name": "SELECT",
        "db.collection.name": "stock",
        "db.query.text": "SELECT sku FROM stock ORDER BY sku",
    }


def test_a_failing_statement_is_an_error_span_and_still_raises(
    tmp_path: Path, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    db, exporter = _db_spans(tmp_path, traced)
    with db.read() as cur:
        cur.execute("INSERT INTO stock (sku) VALUES ('a')")
        with pytest.raises(Exception, match="UNIQUE constraint failed"):
            cur.execute("INSERT INTO stock (sku) VALUES ('a')")
    db.close()
    _, failed = exporter.get_finished_spans()
    assert failed.name == "INSERT stock"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "sqlite3.IntegrityError"
    assert failed.attributes["db.response.status_code"] == "1555"  # SQLITE_CONSTRAINT_PRIMARYKEY
    assert [event.name for event in failed.events] == ["exception"]


class RecordingSpan:
    """The part of a server span the hook reads and writes."""

    def __init__(self, **attributes: Any) -> None:
        self.attributes = attributes

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value


@pytest.mark.parametrize(
    ("recorded", "scope", "expected"),
    [
        # What the ASGI instrumentation writes: the socket's host and port, from scope["server"].
        ("127.0.0.1:8080", {"server": ("127.0.0.1", 8080)}, ("127.0.0.1", 8080)),
        ("::1:8080", {"server": ("::1", 8080)}, ("::1", 8080)),
        ("gateway.test:None", {"server": ("gateway.test", None)}, ("gateway.test", None)),
        # No socket pair in the scope: the recorded value is split.
        ("[::1]:8080", {}, ("::1", 8080)),
        ("example.com:8443", {"server": None}, ("example.com", 8443)),
        ("example.com", {}, ("example.com", None)),
        # The Host header names the server as the client called it (a container's socket is
        # its own address, the caller used the service's name).
        (
            "172.20.0.5:8081",
            {"server": ("172.20.0.5", 8081), "headers": [(b"host", b"inventory-service:8081")]},
            ("inventory-service", 8081),
        ),
        (
            "127.0.0.1:8080",
            {"server": ("127.0.0.1", 8080), "headers": [(b"host", b"localhost")]},
            ("localhost", 8080),
        ),
        ("0.0.0.0:8080", {"headers": [(b"host", b"[::1]:8443")]}, ("::1", 8443)),
    ],
)
def test_server_address_is_the_host_and_the_port_is_an_int(
    recorded: str, scope: dict[str, Any], expected: tuple[str, int | None]
) -> None:
    span = RecordingSpan(**{"server.address": recorded})
    split_server_address(span, scope)  # type: ignore[arg-type]
    assert (span.attributes["server.address"], span.attributes.get("server.port")) == expected


def test_a_port_the_instrumentation_set_is_kept() -> None:
    span = RecordingSpan(**{"server.address": "[::1]:9999", "server.port": 8080})
    split_server_address(span, {})  # type: ignore[arg-type]
    assert (span.attributes["server.address"], span.attributes["server.port"]) == ("::1", 8080)
    split_server_address(span, {"headers": [(b"host", b"localhost")]})  # type: ignore[arg-type]
    assert span.attributes["server.port"] == 8080, "a Host without a port leaves it"


@pytest.mark.parametrize("host", [b"127.0.0.1:8081", b"localhost:8081", b"[::1]:8081"])
def test_behind_a_balancer_the_port_is_the_one_the_client_called(host: bytes) -> None:
    """The replica listens on its own port (the instrumentation records it); the client and its
    client span named the balancer's port in Host: both ends name one server."""
    span = RecordingSpan(**{"server.address": "127.0.0.1:23456", "server.port": 23456})
    scope = {"server": ("127.0.0.1", 23456), "headers": [(b"host", host)]}
    split_server_address(span, scope)  # type: ignore[arg-type]
    assert span.attributes["server.port"] == 8081


def test_host_and_port_keeps_what_it_cannot_split() -> None:
    assert host_and_port("::1") == ("::1", None)
    assert host_and_port("host:http") == ("host:http", None)


async def test_the_background_send_is_one_span_in_notification_service(
    stack: InProcessStack,
) -> None:
    """The FastAPI instrumentation's ``BackgroundTask send_notification`` span is undone
    (servicekit/app.py): this fails if a contrib upgrade brings it back another way.

    The patch uses the first instrumented app's tracer, maybe another test's, so the method
    itself is checked too: Starlette's own, whatever test ran first."""
    call = BackgroundTask.__call__
    assert (call.__module__, call.__qualname__) == (
        "starlette.background",
        "BackgroundTask.__call__",
    )
    response = await stack.client.post("/api/orders", json=ORDER)
    spans: list[ReadableSpan] = stack.spans(response.json()["traceId"])
    assert not [s.name for s in spans if s.name.startswith("BackgroundTask")]
    [send] = [s for s in spans if s.name == "send_notification"]
    assert send.resource.attributes["service.name"] == "notification-service"
    assert send.attributes[ORDER_ID_HASH] == order_id_hash(response.json()["orderId"])
