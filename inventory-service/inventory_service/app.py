"""inventory-service: the catalogue. Stock levels, unit prices and all-or-nothing reservations,
each reserved line priced from the catalogue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SpanExporter

from inventory_service.models import (
    Release,
    ReleaseRequest,
    Reservation,
    ReservedLine,
    ReserveLine,
    ReserveRequest,
    StockLevel,
)
from inventory_service.store import SCHEMA, SEEDS, InsufficientStock, InventoryStore, UnknownSku
from servicekit.app import ServiceApp, create_service_app
from servicekit.catalog import INVENTORY
from servicekit.dependencies import from_state
from servicekit.problems import ProblemError
from servicekit.redaction import RESERVATION_ID_HASH, order_id_hash
from servicekit.settings import ServiceSettings, service_faults, service_port

SERVICE_NAME = INVENTORY.name
router = APIRouter(prefix="/inventory", tags=["inventory"])


class InventorySettings(ServiceSettings):
    port: int = service_port(INVENTORY)
    faults: str = service_faults(INVENTORY)


Store = Annotated[InventoryStore, from_state("store")]


def _reservation(reservation_id: str, state: str, lines: list) -> Reservation:
    items = [ReservedLine(sku=sku, quantity=q, price=price) for sku, q, price in lines]
    return Reservation(reservationId=reservation_id, status=state, items=items)


@router.get("/{sku}")
async def get_stock(sku: str, store: Store) -> StockLevel:
    """Units in stock and the unit price."""
    found = await store.db.call(store.stock, sku)
    if found is None:
        raise ProblemError(404, "Unknown sku", f"No product with sku {sku}.", sku=sku)
    available, price = found
    return StockLevel(sku=sku, available=available, price=price)


@router.post("/reserve", status_code=status.HTTP_201_CREATED)
async def reserve(body: ReserveRequest, store: Store) -> Reservation:
    """Reserve all lines or none, each priced from the catalogue. Out of stock is an error of
    this span (the domain says so)."""
    span = trace.get_current_span()
    span.set_attribute(RESERVATION_ID_HASH, order_id_hash(body.reservationId))
    try:
        state, lines = await store.db.call(
            store.reserve, body.reservationId, [(line.sku, line.quantity) for line in body.items]
        )
    except InsufficientStock as exc:
        span.set_attribute("inventory.sku", exc.sku)
        span.add_event(
            "stock.insufficient",
            {
                "inventory.sku": exc.sku,
                "inventory.requested": exc.requested,
                "inventory.available": exc.available,
            },
        )
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
        raise ProblemError(
            400,
            "Out of stock",
            str(exc),
            sku=exc.sku,
            requested=exc.requested,
            available=exc.available,
        ) from exc
    except UnknownSku as exc:
        span.set_attribute("inventory.sku", exc.sku)
        raise ProblemError(
            404, "Unknown sku", f"No product with sku {exc.sku}.", sku=exc.sku
        ) from exc
    return _reservation(body.reservationId, state, lines)


@router.post("/release")
async def release(body: ReleaseRequest, store: Store) -> Release:
    """Compensation: return a reservation's stock. Idempotent, so it is always safe to retry."""
    trace.get_current_span().set_attribute(RESERVATION_ID_HASH, order_id_hash(body.reservationId))
    state, lines = await store.db.call(store.release, body.reservationId)
    items = [ReserveLine(sku=sku, quantity=q) for sku, q in lines]
    return Release(reservationId=body.reservationId, status=state, items=items)


def create_app(
    settings: InventorySettings | None = None, exporter: SpanExporter | None = None
) -> ServiceApp:
    settings = settings or InventorySettings()
    app = create_service_app(SERVICE_NAME, settings, exporter)
    app.state.store = InventoryStore(app.open_database(settings, "inventory.db", SCHEMA, SEEDS))
    app.include_router(router)
    return app
