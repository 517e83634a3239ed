"""Bad input gets a clear 4xx problem naming the field, and leaves nothing behind."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.conftest import ORDER, InProcessStack

pytestmark = pytest.mark.anyio


def _item(**overrides: Any) -> dict[str, Any]:
    return {**ORDER["items"][0], **overrides}


INVALID_ORDERS = [
    ({"items": ORDER["items"], "email": ORDER["email"]}, "userId"),
    ({"userId": 1, "email": ORDER["email"]}, "items"),
    ({**ORDER, "userId": 0}, "userId"),
    ({**ORDER, "userId": "one"}, "userId"),
    ({**ORDER, "items": []}, "items"),
    ({**ORDER, "items": [_item(sku=f"SKU{i}") for i in range(51)]}, "items"),
    ({**ORDER, "items": [_item(), _item()]}, "items"),
    ({**ORDER, "items": [_item(quantity=0)]}, "items.0.quantity"),
    ({**ORDER, "items": [_item(quantity=-3)]}, "items.0.quantity"),
    ({**ORDER, "items": [_item(quantity=10**9)]}, "items.0.quantity"),
    ({**ORDER, "items": [_item(quantity="2")]}, "items.0.quantity"),
    ({**ORDER, "items": [_item(price=-1)]}, "items.0.price"),
    ({**ORDER, "items": [_item(price=False)]}, "items.0.price"),
    ({**ORDER, "items": [_item(price="5")]}, "items.0.price"),
    ({**ORDER, "items": [_item(sku="")]}, "items.0.sku"),
    ({**ORDER, "items": [_item(sku="bad sku;drop")]}, "items.0.sku"),
    ({**ORDER, "items": [_item(sku="NO-SUCH-SKU")]}, "items.0.sku"),
    ({**ORDER, "email": "not-an-email"}, "email"),
    ({**ORDER, "email": None}, "email"),
    ({**ORDER, "coupon": "FREE"}, "coupon"),
    ([ORDER], "body"),
]


async def _assert_nothing_changed(stack: InProcessStack, before: int) -> None:
    assert stack.available("SKU123") == before
    orders = stack.apps["order-service"].state.store.db
    with orders.read(traced=False) as cur:
        count = cur.execute("SELECT count(*) AS n FROM orders").fetchone()["n"]
    assert count == 0


@pytest.mark.parametrize(("order", "field"), INVALID_ORDERS)
async def test_invalid_order_names_the_field(stack: InProcessStack, order: Any, field: str) -> None:
    before = stack.available("SKU123")
    response = await stack.client.post("/api/orders", json=order)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert field in {e["field"] for e in problem["errors"]}
    assert problem["traceId"]
    assert "customer@" not in response.text, "input is not echoed back"
    await _assert_nothing_changed(stack, before)


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b'{"userId": 1, "items": [', {"content-type": "application/json"}, 400),
        (json.dumps(ORDER).encode(), {"content-type": "text/plain"}, 415),
        (b"x" * (65 * 1024), {"content-type": "application/json"}, 413),
    ],
)
async def test_malformed_requests(
    stack: InProcessStack, content: bytes, headers: dict[str, str], status: int
) -> None:
    before = stack.available("SKU123")
    response = await stack.client.post("/api/orders", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["status"] == status
    await _assert_nothing_changed(stack, before)


async def test_streamed_oversized_body_is_413(stack: InProcessStack) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b" " * 1024

    response = await stack.client.post(
        "/api/orders", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_unknown_order_and_sku_are_404(stack: InProcessStack) -> None:
    assert (await stack.client.get("/api/orders/does-not-exist")).status_code == 404
    assert (await stack.client.get("/api/inventory/NOPE")).status_code == 404
    assert (await stack.client.get("/api/inventory/bad%20sku")).status_code == 422
