"""The order body every client of the local stack sends: the demo, the benchmarks, the tests."""

from __future__ import annotations

from typing import Any


def order_body(
    sku: str = "SKU123",
    quantity: int = 1,
    email: str = "customer@example.com",
    price: float = 50.0,
    user_id: int = 1,
) -> dict[str, Any]:
    """``POST /api/orders`` with one line."""
    return {
        "userId": user_id,
        "items": [{"sku": sku, "quantity": quantity, "price": price}],
        "email": email,
    }
