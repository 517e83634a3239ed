"""Typed read clients of the services behind the gateway's GET routes.

Each wraps the traced :class:`~servicekit.http_client.Downstream` of its service (the same
pooled connection the order flow uses) and answers with the service's JSON body, or ``None``
where the service says 404. A service that cannot answer raises
:class:`~servicekit.problems.ProblemError` (503, 504 or 502), which the route returns as is.
"""

from __future__ import annotations

from typing import Any

from servicekit.http_client import Downstream


class InventoryClient:
    def __init__(self, downstream: Downstream) -> None:
        self.downstream = downstream

    async def stock(self, sku: str) -> dict[str, Any] | None:
        """``{"sku", "available"}``, or None for an unknown sku."""
        response = await self.downstream.request("GET", "/inventory/{sku}", {"sku": sku})
        return None if response.status_code == 404 else response.json()


class OrderClient:
    def __init__(self, downstream: Downstream) -> None:
        self.downstream = downstream

    async def order(self, order_id: str) -> dict[str, Any] | None:
        """The stored order, or None when order-service has none with that id."""
        response = await self.downstream.request(
            "GET", "/orders/{order_id}", {"order_id": order_id}
        )
        return None if response.status_code == 404 else response.json()
