"""The order saga: reserve stock, store the order, notify; release the stock if storing fails.

inventory-service prices the lines as it reserves them; the order is stored and answered at
those prices (a client's ``price`` is not used). The server span records
``order.price_source=inventory-service`` and, when the client sent prices that differ,
``order.client_prices_ignored`` (how many lines).

A release that cannot reach inventory-service, or a reservation whose outcome is unknown, is
kept in a :class:`~api_gateway.compensation.CompensationBacklog` and retried before the next
order (:meth:`OrderFlow.retry_backlog`, outside any order's ``Idempotency-Key`` lease) and by
the periodic :meth:`OrderFlow.sweep`.

Every step is keyed by the order id and idempotent under it (a reservation or an order that
exists is returned, not made again), so a saga can be run again under its id to finish what a
dead gateway started (:mod:`api_gateway.idempotency`). The order id is a bearer secret: spans
and logs carry its hash (:mod:`servicekit.redaction`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import BaseModel

from api_gateway.compensation import CompensationBacklog
from api_gateway.idempotency import ReservationReleased
from api_gateway.models import OrderRequest, OrderResponse, PricedLine
from servicekit.http_client import DEADLINE_GRACE_SECONDS, Downstream
from servicekit.money import Money
from servicekit.problems import ProblemError, current_trace_id
from servicekit.redaction import ORDER_ID_HASH, RESERVATION_ID_HASH, order_id_hash

log = logging.getLogger(__name__)

# Backlogged compensations one order retries first: after a long outage the backlog drains over
# several orders instead of delaying one of them by thousands of calls.
RETRIES_PER_ORDER = 20
# Downstream calls one saga makes one after another at most: reserve, then (its reservation
# found released, cancel and start again) reserve, store, release; notify comes on top.
SAGA_SEQUENTIAL_CALLS = 5


def saga_worst_case_seconds(downstream_timeout: float, notify_timeout: float) -> float:
    """The longest one saga can take when every call runs into its timeout (its grace
    included): an ``Idempotency-Key`` lease must outlast it."""
    return SAGA_SEQUENTIAL_CALLS * (downstream_timeout + DEADLINE_GRACE_SECONDS) + (
        notify_timeout + DEADLINE_GRACE_SECONDS
    )


class OrderFlow:
    def __init__(
        self,
        inventory: Downstream,
        orders: Downstream,
        notifications: Downstream,
        tracer: trace.Tracer,
        notify_timeout_seconds: float,
        releases: CompensationBacklog,
        cancellations: CompensationBacklog,
    ) -> None:
        self.releases = releases
        self.cancellations = cancellations
        self.inventory = inventory
        self.orders = orders
        self.notifications = notifications
        self.tracer = tracer
        self.notify_timeout_seconds = notify_timeout_seconds

    async def place(self, order_id: str, body: OrderRequest) -> OrderResponse:
        trace.get_current_span().set_attributes(
            {
                ORDER_ID_HASH: order_id_hash(order_id),
                "customer.id": str(body.userId),
                "order.item_count": sum(item.quantity for item in body.items),
            }
        )
        lines = await self._reserve(order_id, body)
        _record_prices(body, lines)
        try:
            order = await self._store(order_id, body, lines)
        except ProblemError as exc:
            await self._release(order_id)
            if _maybe_delivered(exc):  # order-service may have stored it before it broke
                await self.cancellations.db.call(self.cancellations.add, order_id)
            raise
        notification = await self._notify(order_id, str(body.email), order.total)
        return OrderResponse(
            orderId=order_id,
            traceId=current_trace_id(),
            status=order.status,
            total=order.total,
            userId=body.userId,
            items=lines,
            notification=notification,
        )

    async def _reserve(self, order_id: str, body: OrderRequest) -> list[PricedLine]:
        """The lines as reserved, each at its catalogue price."""
        lines = [{"sku": item.sku, "quantity": item.quantity} for item in body.items]
        try:
            response = await self.inventory.request(
                "POST", "/inventory/reserve", json={"reservationId": order_id, "items": lines}
            )
        except ProblemError as exc:
            # Timed out, or the connection broke after the request went out: inventory-service
            # may have committed the reservation. Releasing an unknown one is a no-op.
            if exc.status in (503, 504):
                await self._release(order_id)
            raise
        if response.status_code == 201:
            reserved = Reserved.model_validate_json(response.content)
            if reserved.status == "released":  # a saga run before under this id gave it back
                raise ReservationReleased(order_id)
            return reserved.items
        problem = _json(response)
        sku = problem.get("sku")
        if response.status_code == 400 and sku:
            raise ProblemError(
                400,
                "Out of stock",
                problem.get("detail", f"insufficient stock for {sku}"),
                sku=sku,
                requested=problem.get("requested"),
                available=problem.get("available"),
            )
        if response.status_code == 404 and sku:
            index = next(i for i, item in enumerate(body.items) if item.sku == sku)
            raise ProblemError(
                422,
                "Unknown sku",
                f"No product with sku {sku}.",
                sku=sku,
                errors=[{"field": f"items.{index}.sku", "message": f"unknown sku {sku}"}],
            )
        raise ProblemError(
            502,
            "Downstream error",
            f"inventory-service answered HTTP {response.status_code} to the reservation.",
            service=self.inventory.name,
        )

    async def _store(
        self, order_id: str, body: OrderRequest, lines: list[PricedLine]
    ) -> StoredTotal:
        payload = {
            "orderId": order_id,
            "userId": body.userId,
            "reservationId": order_id,
            "items": [line.model_dump(mode="json") for line in lines],
        }
        response = await self.orders.request("POST", "/orders", json=payload)
        if response.status_code not in (200, 201):
            raise ProblemError(
                502,
                "Downstream error",
                f"order-service answered HTTP {response.status_code} to the new order.",
                service=self.orders.name,
            )
        return StoredTotal.model_validate_json(response.content)

    async def _release(self, reservation_id: str, retry: bool = False) -> bool:
        """Compensation: give a reservation's stock back. Idempotent."""
        with self.tracer.start_as_current_span("compensate_reservation") as span:
            span.set_attribute(RESERVATION_ID_HASH, order_id_hash(reservation_id))
            call = self.inventory.request(
                "POST", "/inventory/release", json={"reservationId": reservation_id}
            )
            return await self._compensate(span, call, 200, self.releases, reservation_id, retry)

    async def cancel(self, order_id: str, retry: bool = False) -> bool:
        """Compensation: delete an order its client was told failed. Idempotent."""
        with self.tracer.start_as_current_span("compensate_order") as span:
            span.set_attribute(ORDER_ID_HASH, order_id_hash(order_id))
            call = self.orders.request("DELETE", "/orders/{order_id}", {"order_id": order_id})
            return await self._compensate(span, call, 204, self.cancellations, order_id, retry)

    async def _compensate(
        self,
        span: trace.Span,
        call: Awaitable[httpx.Response],
        expected: int,
        backlog: CompensationBacklog,
        item_id: str,
        retry: bool,
    ) -> bool:
        """Await one compensation call. A failure is marked on the span and added to ``backlog``
        (a failed ``retry`` is there already); a successful retry is taken out of it."""
        try:
            response = await call
            if response.status_code != expected:
                raise ProblemError(502, "Compensation failed", f"HTTP {response.status_code}")
        except ProblemError as exc:
            span.set_status(trace.Status(trace.StatusCode.ERROR, exc.detail))
            log.error("%s %s not done yet: %s", backlog.table, order_id_hash(item_id), exc.detail)
            if not retry:
                await backlog.db.call(backlog.add, item_id)
            return False
        if retry:
            await backlog.db.call(backlog.remove, item_id)
        return True

    async def retry_backlog(self, parent: otel_context.Context | None = None) -> None:
        """Earlier orders' compensations that failed, each in a trace of its own (``parent``:
        each a child of that context's span instead)."""
        if not any(await self._pending()):
            return
        for backlog, compensate in (
            (self.releases, self._release),
            (self.cancellations, self.cancel),
        ):
            for item_id in await backlog.db.call(backlog.ids, RETRIES_PER_ORDER):
                token = otel_context.attach(parent or otel_context.Context())
                try:
                    if not await compensate(item_id, retry=True):
                        break  # that service is still unreachable: try again next order
                finally:
                    otel_context.detach(token)

    async def _pending(self) -> tuple[int, int]:
        """(releases, cancellations) pending: a query each on a shared store (in the thread
        pool), this process's tally otherwise (no query, no thread hop per order)."""

        def counts() -> tuple[int, int]:
            return self.releases.count, self.cancellations.count

        return await self.releases.db.call(counts)  # one database holds both backlogs

    async def sweep(self) -> None:
        """The periodic retry (``COMPENSATION_RETRY_SECONDS``): what is pending, also entries
        another gateway added to a shared store, is carried out even when no order comes. One
        span (``compensation_sweep``, a trace's root) per sweep that finds something to do;
        an empty backlog costs a count query and no span."""
        releases, cancellations = await self._pending()
        if not (releases or cancellations):
            return
        with self.tracer.start_as_current_span(
            "compensation_sweep",
            context=otel_context.Context(),
            attributes={
                "compensation.pending_releases": releases,
                "compensation.pending_cancellations": cancellations,
            },
        ):
            await self.retry_backlog(otel_context.get_current())

    async def _notify(self, order_id: str, email: str, total: Decimal) -> str:
        """Ask notification-service to send; never fails the order, bounded in time."""
        try:
            response = await self.notifications.request(
                "POST",
                "/notify",
                json={"orderId": order_id, "email": email, "total": str(total)},
                timeout=self.notify_timeout_seconds,
            )
        except ProblemError as exc:
            log.warning(
                "notification for order %s not sent: %s", order_id_hash(order_id), exc.detail
            )
            return "failed"
        return "queued" if response.status_code == 202 else "failed"


class StoredTotal(BaseModel):
    """What the gateway reads of order-service's answer."""

    status: str
    total: Money


class Reserved(BaseModel):
    """inventory-service's answer to a reservation: the lines at their catalogue prices;
    ``status`` ``released`` for one given back since."""

    status: str
    items: list[PricedLine]


def _record_prices(body: OrderRequest, lines: list[PricedLine]) -> None:
    span = trace.get_current_span()
    span.set_attribute("order.price_source", "inventory-service")
    charged = {line.sku: line.price for line in lines}
    ignored = sum(
        1
        for item in body.items
        if item.price is not None and Decimal(str(item.price)) != charged[item.sku]
    )
    if ignored:
        span.set_attribute("order.client_prices_ignored", ignored)


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _maybe_delivered(exc: ProblemError) -> bool:
    """The connection broke after the request went out: the callee may have done the work.

    A refused connection never reached it; a timeout cannot have stored anything, since the
    callee checks the caller's deadline before it commits (servicekit.deadline).
    """
    cause = exc.__cause__
    return isinstance(cause, httpx.TransportError) and not isinstance(
        cause, httpx.ConnectError | httpx.TimeoutException
    )
