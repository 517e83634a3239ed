"""The order saga: reserve stock, store the order, notify; release the stock if storing fails."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace

from api_gateway.models import OrderRequest, OrderResponse
from servicekit.http_client import Downstream
from servicekit.problems import ProblemError, current_trace_id

log = logging.getLogger(__name__)


class OrderFlow:
    def __init__(
        self,
        inventory: Downstream,
        orders: Downstream,
        notifications: Downstream,
        tracer: trace.Tracer,
        notify_timeout_seconds: float,
    ) -> None:
        self.inventory = inventory
        self.orders = orders
        self.notifications = notifications
        self.tracer = tracer
        self.notify_timeout_seconds = notify_timeout_seconds

    async def place(self, order_id: str, body: OrderRequest) -> OrderResponse:
        trace.get_current_span().set_attributes(
            {
                "order.id": order_id,
                "customer.id": str(body.userId),
                "order.item_count": sum(item.quantity for item in body.items),
            }
        )
        await self._reserve(order_id, body)
        try:
            order = await self._store(order_id, body)
        except ProblemError:
            await self._release(order_id)
            raise
        notification = await self._notify(order_id, str(body.email), order["total"])
        return OrderResponse(
            orderId=order_id,
            traceId=current_trace_id(),
            status=order["status"],
            total=order["total"],
            userId=body.userId,
            items=body.items,
            notification=notification,
        )

    async def _reserve(self, order_id: str, body: OrderRequest) -> None:
        lines = [{"sku": item.sku, "quantity": item.quantity} for item in body.items]
        try:
            response = await self.inventory.request(
                "POST", "/inventory/reserve", json={"reservationId": order_id, "items": lines}
            )
        except ProblemError as exc:
            if exc.status == 504:  # it may have reserved before we gave up waiting
                await self._release(order_id)
            raise
        if response.status_code == 201:
            return
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

    async def _store(self, order_id: str, body: OrderRequest) -> dict[str, Any]:
        payload = {
            "orderId": order_id,
            "userId": body.userId,
            "reservationId": order_id,
            "items": [item.model_dump() for item in body.items],
        }
        response = await self.orders.request("POST", "/orders", json=payload)
        if response.status_code not in (200, 201):
            raise ProblemError(
                502,
                "Downstream error",
                f"order-service answered HTTP {response.status_code} to the new order.",
                service=self.orders.name,
            )
        return _json(response)

    async def _release(self, reservation_id: str) -> None:
        """Compensation. Failure is logged and marked on the span; release is idempotent."""
        with self.tracer.start_as_current_span("compensate_reservation") as span:
            span.set_attribute("inventory.reservation_id", reservation_id)
            try:
                response = await self.inventory.request(
                    "POST", "/inventory/release", json={"reservationId": reservation_id}
                )
                if response.status_code != 200:
                    raise ProblemError(502, "Release failed", f"HTTP {response.status_code}")
            except ProblemError as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, exc.detail))
                log.error("reservation %s not released: %s", reservation_id, exc.detail)

    async def _notify(self, order_id: str, email: str, total: float) -> str:
        """Ask notification-service to send; never fails the order, bounded in time."""
        try:
            response = await self.notifications.request(
                "POST",
                "/notify",
                json={"orderId": order_id, "email": email, "total": total},
                timeout=self.notify_timeout_seconds,
            )
        except ProblemError as exc:
            log.warning("notification for order %s not sent: %s", order_id, exc.detail)
            return "failed"
        return "queued" if response.status_code == 202 else "failed"


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
