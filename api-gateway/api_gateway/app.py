"""api-gateway: the public API. ``POST /api/orders`` runs the order flow across the services."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Header, Path, Response, status
from httpx import ASGITransport
from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import Field

from api_gateway.admin_proxy import admin_proxy
from api_gateway.clients import InventoryClient, OrderClient
from api_gateway.compensation import SCHEMA as RELEASES_SCHEMA
from api_gateway.compensation import cancellation_backlog, release_backlog
from api_gateway.idempotency import (
    HEARTBEAT_SECONDS,
    SCHEMA,
    IdempotencyStore,
    add_lease_columns,
    request_fingerprint,
    run_once,
)
from api_gateway.models import OrderRequest, OrderResponse, StoredOrder
from api_gateway.orders import OrderFlow, saga_worst_case_seconds
from servicekit.admin import ClientFaultBaggageFilter, require_admin_token
from servicekit.app import ServiceApp, create_service_app
from servicekit.catalog import GATEWAY, INVENTORY, NOTIFICATION, ORDER
from servicekit.dependencies import from_state
from servicekit.http_client import DEADLINE_GRACE_SECONDS
from servicekit.identifiers import IDENTIFIER_MAX_LENGTH, IDENTIFIER_PATTERN, new_order_id
from servicekit.problems import PROBLEM_RESPONSES, ProblemError
from servicekit.settings import ServiceSettings, service_faults, service_port

SERVICE_NAME = GATEWAY.name
log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["orders"], responses=PROBLEM_RESPONSES)
IdentifierPath = Path(min_length=1, max_length=IDENTIFIER_MAX_LENGTH, pattern=IDENTIFIER_PATTERN)


class GatewaySettings(ServiceSettings):
    port: int = service_port(GATEWAY)
    faults: str = service_faults(GATEWAY)
    inventory_url: str = f"http://127.0.0.1:{INVENTORY.default_port}"
    order_url: str = f"http://127.0.0.1:{ORDER.default_port}"
    notification_url: str = f"http://127.0.0.1:{NOTIFICATION.default_port}"
    downstream_timeout_seconds: float = Field(5.0, gt=0)
    notify_timeout_seconds: float = Field(1.0, gt=0)
    idempotency_lease_seconds: float = Field(
        60.0,
        gt=0,
        description="how long an Idempotency-Key stays in progress before a retry takes it"
        " over; raised to the saga's worst case if shorter",
    )
    compensation_retry_seconds: float = Field(
        5.0, gt=0, description="how often pending compensations are retried without an order"
    )
    fault_baggage_anonymous: bool = Field(
        False,
        description="true: any caller's fault baggage acts, not only the admin token holder's",
    )


Flow = Annotated[OrderFlow, from_state("flow")]
Idempotency = Annotated[IdempotencyStore, from_state("idempotency")]
Inventory = Annotated[InventoryClient, from_state("inventory")]
Orders = Annotated[OrderClient, from_state("orders")]


@router.post("/orders", status_code=status.HTTP_201_CREATED, response_model=OrderResponse)
async def create_order(
    body: OrderRequest,
    response: Response,
    flow: Flow,
    store: Idempotency,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
) -> Any:
    await flow.retry_backlog()
    if idempotency_key is None:
        return await flow.place(new_order_id(), body)
    result, replayed = await run_once(
        store,
        idempotency_key,
        request_fingerprint(body.model_dump(mode="json")),
        new_order_id,
        lambda order_id: flow.place(order_id, body),
        flow.cancel,
    )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return result


@router.get("/orders/{order_id}", response_model=StoredOrder)
async def get_order(order_id: Annotated[str, IdentifierPath], orders: Orders) -> Any:
    """The order with this id. The id is the capability: 128 random bits, returned only to the
    client that placed the order, and whoever holds it may read the order (no account check;
    docs/reliability.md, "Who may read an order"). Internal ids are not returned."""
    order = await orders.order(order_id)
    if order is None:
        raise ProblemError(404, "Order not found", f"No order {order_id}.", orderId=order_id)
    return order


@router.get("/inventory/{sku}")
async def get_stock(sku: Annotated[str, IdentifierPath], inventory: Inventory) -> Any:
    stock = await inventory.stock(sku)
    if stock is None:
        raise ProblemError(404, "Unknown sku", f"No product with sku {sku}.", sku=sku)
    return stock


def create_app(
    settings: GatewaySettings | None = None,
    exporter: SpanExporter | None = None,
    transports: dict[str, httpx.AsyncBaseTransport] | None = None,
) -> ServiceApp:
    """``transports`` (by service name) lets tests wire the services in one process."""
    settings = settings or GatewaySettings()
    transports = transports or {}
    app = create_service_app(SERVICE_NAME, settings, exporter, public_edge=True)
    timeout = settings.downstream_timeout_seconds

    def downstream(name: str, url: str):  # type: ignore[no-untyped-def]
        return app.downstream(name, url, timeout, transports.get(name))

    gateway_db = app.open_database(
        settings, "gateway.db", SCHEMA + RELEASES_SCHEMA, migrations=(add_lease_columns,)
    )
    inventory = downstream(INVENTORY.name, settings.inventory_url)
    orders = downstream(ORDER.name, settings.order_url)
    notifications = downstream(NOTIFICATION.name, settings.notification_url)
    app.state.flow = OrderFlow(
        inventory=inventory,
        orders=orders,
        notifications=notifications,
        tracer=app.telemetry.tracer,
        notify_timeout_seconds=settings.notify_timeout_seconds,
        releases=release_backlog(gateway_db),
        cancellations=cancellation_backlog(gateway_db),
    )
    app.every(settings.compensation_retry_seconds, app.state.flow.sweep)
    worst_case = saga_worst_case_seconds(timeout, settings.notify_timeout_seconds)
    lease = max(settings.idempotency_lease_seconds, worst_case)
    if lease > settings.idempotency_lease_seconds:
        log.warning("IDEMPOTENCY_LEASE_SECONDS raised to %.1f s, the saga's worst case", lease)
    # A call a dead gateway sent may commit until its budget (the downstream timeout) runs out
    # in the callee, which checks it before COMMIT; the grace leaves the commit its moment.
    grace = timeout + DEADLINE_GRACE_SECONDS
    app.state.idempotency = IdempotencyStore(gateway_db, lease, grace)
    if gateway_db.shared:  # other gateways take this one's leases over once its beats stop
        heartbeat = app.state.idempotency.heartbeat
        app.every(HEARTBEAT_SECONDS, lambda: gateway_db.call(heartbeat))
    if app.state.idempotency.orphaned:
        log.warning(
            "%d Idempotency-Key(s) left in progress by an earlier gateway: retries take them"
            " over in %.1f s",
            app.state.idempotency.orphaned,
            grace,
        )
    app.state.inventory = InventoryClient(inventory)
    app.state.orders = OrderClient(orders)
    app.state.admin_targets = {
        SERVICE_NAME: app.downstream(SERVICE_NAME, "http://self", timeout, ASGITransport(app)),
        INVENTORY.name: inventory,
        ORDER.name: orders,
        NOTIFICATION.name: notifications,
    }
    app.include_router(router)
    if settings.admin_token:  # without one the routes do not exist: 404 for every method
        app.include_router(admin_proxy, dependencies=[require_admin_token(settings.admin_token)])
    # The public edge: outermost of the app's middleware, so before the gateway's own faults.
    app.add_middleware(
        ClientFaultBaggageFilter,
        admin_token=settings.admin_token,
        allow_anonymous=settings.fault_baggage_anonymous,
    )
    return app
