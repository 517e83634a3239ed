"""order-service: stores orders; ``process_order`` is its manual span."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response, status
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SpanExporter

from order_service.models import CreateOrder, Order
from order_service.store import SCHEMA, OrderStore, order_total
from servicekit.app import ServiceApp, create_service_app
from servicekit.catalog import ORDER
from servicekit.dependencies import ServiceTracer, from_state
from servicekit.problems import ProblemError
from servicekit.redaction import ORDER_ID_HASH, order_id_hash
from servicekit.settings import ServiceSettings, service_faults, service_port

SERVICE_NAME = ORDER.name
router = APIRouter(prefix="/orders", tags=["orders"])


class OrderSettings(ServiceSettings):
    port: int = service_port(ORDER)
    faults: str = service_faults(ORDER)


Store = Annotated[OrderStore, from_state("store")]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_order(
    body: CreateOrder, response: Response, store: Store, tracer: ServiceTracer
) -> Order:
    """Price and store the order inside the ``process_order`` span (the business operation)."""
    with tracer.start_as_current_span("process_order") as span:
        total = order_total(body.items)
        span.set_attributes(
            {
                ORDER_ID_HASH: order_id_hash(body.orderId),
                "order.item_count": sum(line.quantity for line in body.items),
                "order.line_count": len(body.items),
                "order.total": float(total),
                "customer.id": str(body.userId),
            }
        )
        order, created = await store.db.call(store.create, body, total)
        span.set_attribute("order.created", created)
    if not created:
        response.status_code = status.HTTP_200_OK
    return order


@router.delete("/{order_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_order(order_id: str, store: Store) -> None:
    """Compensation from the gateway: an order whose creation it reported as failed (the
    connection broke after the request went out) must not stay stored. Idempotent."""
    deleted = await store.db.call(store.delete, order_id)
    trace.get_current_span().set_attribute("order.deleted", deleted)


@router.get("/{order_id}")
async def get_order(order_id: str, store: Store) -> Order:
    order = await store.db.call(store.get, order_id)
    if order is None:
        raise ProblemError(404, "Order not found", f"No order {order_id}.", orderId=order_id)
    return order


def create_app(
    settings: OrderSettings | None = None, exporter: SpanExporter | None = None
) -> ServiceApp:
    settings = settings or OrderSettings()
    app = create_service_app(SERVICE_NAME, settings, exporter)
    app.state.store = OrderStore(app.open_database(settings, "orders.db", SCHEMA))
    app.include_router(router)
    return app
