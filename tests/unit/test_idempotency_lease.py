"""An ``Idempotency-Key`` is a lease: a retry takes over a saga its dead owner left at any stage
and finishes or compensates it; stock always agrees with the answer.

A dead gateway is played by writing what it left behind: its lease row (another owner) and the
saga steps it got through, made by calling the services directly under the lease's order id.
tests/reliability/test_gateway_crash.py kills a real gateway at each stage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_gateway.idempotency import IdempotencyStore, add_lease_columns, request_fingerprint
from api_gateway.models import OrderRequest
from servicekit.faults import RuntimeFault
from servicekit.identifiers import new_order_id
from servicekit.storage import Database
from servicekit.storage.sqlite import SqliteDatabase
from tests.unit.conftest import ORDER, InProcessStack, build_stack

pytestmark = pytest.mark.anyio
SKU = ORDER["items"][0]["sku"]
QUANTITY = ORDER["items"][0]["quantity"]
FINGERPRINT = request_fingerprint(OrderRequest.model_validate(ORDER).model_dump(mode="json"))
DEAD = "dead-gateway-1"


def leave_lease(stack: InProcessStack, key: str, order_id: str, expires_in: float) -> None:
    """The row a gateway that died mid-saga leaves: in progress, its owner, its deadline."""
    with gateway_db(stack).transaction() as cur:
        cur.execute(
            "INSERT INTO idempotency_keys"
            " (key, request_hash, state, order_id, owner, lease_expires_at)"
            " VALUES (?, ?, 'in_progress', ?, ?, ?)",
            (key, FINGERPRINT, order_id, DEAD, time.time() + expires_in),
        )


def gateway_db(stack: InProcessStack) -> Database:
    return stack.apps["api-gateway"].state.idempotency.db


async def call(stack: InProcessStack, service: str, method: str, path: str, body: Any) -> int:
    transport = stack.transports[service]
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        return (await client.request(method, path, json=body)).status_code


async def reserve(stack: InProcessStack, order_id: str) -> None:
    body = {"reservationId": order_id, "items": [{"sku": SKU, "quantity": QUANTITY}]}
    assert await call(stack, "inventory-service", "POST", "/inventory/reserve", body) == 201


async def store(stack: InProcessStack, order_id: str) -> None:
    line = {"sku": SKU, "quantity": QUANTITY, "price": "50.00"}
    body = {"orderId": order_id, "userId": 1, "reservationId": order_id, "items": [line]}
    assert await call(stack, "order-service", "POST", "/orders", body) == 201


async def release(stack: InProcessStack, order_id: str) -> None:
    body = {"reservationId": order_id}
    assert await call(stack, "inventory-service", "POST", "/inventory/release", body) == 200


def orders(stack: InProcessStack) -> list[str]:
    db = stack.apps["order-service"].state.store.db
    with db.read(traced=False) as cur:
        return [row["order_id"] for row in cur.execute("SELECT order_id FROM orders")]


def key_state(stack: InProcessStack, key: str) -> str | None:
    row = stack.apps["api-gateway"].state.idempotency.state(key)
    return None if row is None else row["state"]


@pytest.mark.parametrize("stage", ["claimed", "reserved", "stored", "notified"])
async def test_retry_after_the_deadline_completes_the_dead_owners_order(
    stack: InProcessStack, stage: str
) -> None:
    key, order_id = f"lease-{stage}", new_order_id()
    before = stack.available(SKU)
    leave_lease(stack, key, order_id, expires_in=-1)
    if stage != "claimed":
        await reserve(stack, order_id)
    if stage in ("stored", "notified"):
        await store(stack, order_id)
    if stage == "notified":
        body = {"orderId": order_id, "email": "a@example.com", "total": "100.00"}
        assert await call(stack, "notification-service", "POST", "/notify", body) == 202

    response = await stack.client.post("/api/orders", json=ORDER, headers={"Idempotency-Key": key})
    assert response.status_code == 201, response.text
    assert response.json()["orderId"] == order_id, "the order the dead owner started"
    assert orders(stack) == [order_id]
    assert stack.available(SKU) == before - QUANTITY, "reserved once"
    assert key_state(stack, key) == "done"
    replay = await stack.client.post("/api/orders", json=ORDER, headers={"Idempotency-Key": key})
    assert replay.json()["orderId"] == order_id
    assert replay.headers["Idempotent-Replayed"] == "true"
    [root] = [s for s in stack.spans() if s.name == "POST /api/orders" and s.events]
    assert [e.name for e in root.events] == ["idempotency.lease_taken_over"]


async def test_a_released_reservation_is_cancelled_and_the_order_started_afresh(
    stack: InProcessStack,
) -> None:
    """The dead owner's store failed, it released the stock and died before freeing the key: its
    order id cannot become an order any more (its stock is back); the retry makes a new one."""
    key, order_id = "lease-released", new_order_id()
    before = stack.available(SKU)
    leave_lease(stack, key, order_id, expires_in=-1)
    await reserve(stack, order_id)
    await store(stack, order_id)  # stored after all (a broken connection), then released
    await release(stack, order_id)

    response = await stack.client.post("/api/orders", json=ORDER, headers={"Idempotency-Key": key})
    assert response.status_code == 201, response.text
    new_id = response.json()["orderId"]
    assert new_id != order_id
    assert orders(stack) == [new_id], "the released order id was cancelled"
    assert stack.available(SKU) == before - QUANTITY
    assert stack.apps["api-gateway"].state.idempotency.state(key)["order_id"] == new_id


async def test_a_live_lease_answers_409_with_retry_after(stack: InProcessStack) -> None:
    leave_lease(stack, "lease-live", new_order_id(), expires_in=30)
    before = stack.available(SKU)
    headers = {"Idempotency-Key": "lease-live"}
    response = await stack.client.post("/api/orders", json=ORDER, headers=headers)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert 29 <= int(response.headers["Retry-After"]) <= 30
    assert stack.available(SKU) == before and orders(stack) == []
    other = {**ORDER, "userId": 2}  # another body under the key is still refused first
    assert (await stack.client.post("/api/orders", json=other, headers=headers)).status_code == 422


async def test_a_failing_take_over_compensates_and_frees_the_key(tmp_path: Path) -> None:
    """The retry finds the reservation but order-service refuses: stock given back, key freed."""
    stack = build_stack(tmp_path)
    key, order_id = "lease-fails", new_order_id()
    before = stack.available(SKU)
    leave_lease(stack, key, order_id, expires_in=-1)
    await reserve(stack, order_id)
    injector = stack.apps["order-service"].fault_injector  # type: ignore[attr-defined]
    injector.add(RuntimeFault(kind="error", value="503", path_prefix="/orders"))
    response = await stack.client.post("/api/orders", json=ORDER, headers={"Idempotency-Key": key})
    assert response.status_code == 503, response.text
    assert stack.available(SKU) == before
    assert orders(stack) == [] and key_state(stack, key) is None


def test_a_restart_adopts_the_leases_of_its_dead_predecessor(tmp_path: Path) -> None:
    """At start-up, leases held by an earlier process expire within the grace, not the lease."""
    from opentelemetry.sdk.trace import TracerProvider

    from api_gateway.idempotency import SCHEMA

    db = SqliteDatabase(tmp_path / "gateway.db", SCHEMA, TracerProvider())
    first = IdempotencyStore(db, lease_seconds=60, takeover_grace=5, owner="first")
    first.claim("k", "f", "order-1")
    with pytest.raises(Exception) as live:
        first.claim("k", "f", "order-2")
    # Its own saga, running here: soon done.
    assert live.value.headers["Retry-After"] == "1"  # type: ignore[attr-defined]

    clock = [time.time()]
    second = IdempotencyStore(
        db, lease_seconds=60, takeover_grace=5, owner="second", clock=lambda: clock[0]
    )
    assert second.orphaned == 1
    with pytest.raises(Exception) as grace:
        second.claim("k", "f", "order-2")
    assert grace.value.headers["Retry-After"] == "5"  # type: ignore[attr-defined]
    clock[0] += 5
    claim = second.claim("k", "f", "order-2")
    assert (claim.order_id, claim.taken_over) == ("order-1", True)
    assert second.state("k")["owner"] == "second"
    first.complete("k", {"late": True})  # the old owner's late write does not land
    assert second.state("k")["state"] == "in_progress"


def test_a_key_table_from_before_leases_is_upgraded_and_its_keys_taken_over(
    tmp_path: Path,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    old = """CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY, request_hash TEXT NOT NULL,
        state TEXT NOT NULL, response TEXT, created_at TEXT);
        INSERT INTO idempotency_keys (key, request_hash, state) VALUES ('k', 'f', 'in_progress');"""
    from api_gateway.idempotency import SCHEMA

    db = SqliteDatabase(  # the old data directory, then today's schema script and migration
        tmp_path / "gateway.db", old + SCHEMA, TracerProvider(), migrations=(add_lease_columns,)
    )
    store = IdempotencyStore(db, lease_seconds=60, takeover_grace=0, owner="new")
    claim = store.claim("k", "f", "fresh-id")
    assert (claim.order_id, claim.taken_over) == ("fresh-id", True)


async def test_inventory_reserves_nothing_after_the_callers_deadline(tmp_path: Path) -> None:
    """A reservation a dead gateway sent cannot commit once its budget is over, so a take-over
    after the grace never races it."""
    stack = build_stack(tmp_path, overrides={"inventory-service": {"faults": "latency:300"}})
    before = stack.available(SKU)
    body = {"reservationId": "late-1", "items": [{"sku": SKU, "quantity": 1}]}
    transport = httpx.ASGITransport(app=stack.apps["inventory-service"])
    async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as client:
        late = await client.post(
            "/inventory/reserve", json=body, headers={"request-timeout-ms": "200"}
        )
        assert late.status_code == 504
        assert stack.available(SKU) == before, "rolled back"
        on_time = await client.post(
            "/inventory/reserve", json=body, headers={"request-timeout-ms": "2000"}
        )
        assert on_time.status_code == 201
        assert stack.available(SKU) == before - 1
    await stack.client.aclose()
