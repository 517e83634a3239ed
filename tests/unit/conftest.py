"""The four services wired in one process through httpx ASGI transports.

Every app gets its own tracer provider (its own ``service.name``) exporting to one shared
``InMemorySpanExporter``, so one order yields one complete trace to assert on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api_gateway.app import GatewaySettings
from api_gateway.app import create_app as create_gateway
from inventory_service.app import InventorySettings
from inventory_service.app import create_app as create_inventory
from notification_service.app import NotificationSettings
from notification_service.app import create_app as create_notification
from order_service.app import OrderSettings
from order_service.app import create_app as create_order
from stackctl.orders import order_body

ORDER = order_body(quantity=2)


class ProcessBoundaryTransport(httpx.ASGITransport):
    """An ASGI transport that starts the callee with an empty OpenTelemetry context.

    Between real processes nothing but the ``traceparent``/``baggage`` headers crosses the wire;
    without this, the callee would see the caller's span as a local parent (and open INTERNAL
    instead of SERVER spans), hiding propagation bugs the real deployment would have.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        token = otel_context.attach(otel_context.Context())
        try:
            return await super().handle_async_request(request)
        finally:
            otel_context.detach(token)


@dataclass
class InProcessStack:
    client: httpx.AsyncClient
    exporter: InMemorySpanExporter
    apps: dict[str, FastAPI]
    transports: dict[str, httpx.AsyncBaseTransport] = field(default_factory=dict)

    def spans(self, trace_id: str | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        if trace_id is None:
            return spans
        return [s for s in spans if format(s.context.trace_id, "032x") == trace_id]

    def available(self, sku: str) -> int:
        store = self.apps["inventory-service"].state.store
        value = store.stock(sku)
        assert value is not None
        return value[0]


def build_stack(
    data_dir: Path,
    wrap: Callable[[str, FastAPI], httpx.AsyncBaseTransport] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> InProcessStack:
    """Build the stack; ``wrap`` may replace the transport to one service (to break it) and
    ``overrides`` sets settings per service name."""
    exporter = InMemorySpanExporter()

    def settings(name: str, cls: type, **defaults: Any) -> Any:
        return cls(data_dir=data_dir, **{**defaults, **(overrides or {}).get(name, {})})

    apps: dict[str, FastAPI] = {
        "inventory-service": create_inventory(
            settings("inventory-service", InventorySettings), exporter
        ),
        "order-service": create_order(settings("order-service", OrderSettings), exporter),
        "notification-service": create_notification(
            settings("notification-service", NotificationSettings, notify_send_delay_ms=0), exporter
        ),
    }
    transports: dict[str, httpx.AsyncBaseTransport] = {
        name: (wrap(name, app) if wrap else ProcessBoundaryTransport(app=app))
        for name, app in apps.items()
    }
    gateway = create_gateway(settings("api-gateway", GatewaySettings), exporter, transports)
    apps["api-gateway"] = gateway
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway), base_url="http://gateway.test"
    )
    return InProcessStack(client=client, exporter=exporter, apps=apps, transports=transports)


@pytest.fixture(autouse=True, scope="session")
def no_local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A ``make up`` stack running from this checkout changes where the analyzer's reports link
    (its trace browser): unit tests see none, whatever runs on the machine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUN_DIR", str(tmp_path_factory.mktemp("no-stack") / "run"))
        yield


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[InProcessStack]:
    s = build_stack(tmp_path)
    yield s
    await s.client.aclose()
