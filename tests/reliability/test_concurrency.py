"""500 orders at once against limited stock: exactly the stock there is gets sold, stock never
goes below zero, and copies of a request under one ``Idempotency-Key`` make one order at most.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest

from servicekit.http_client import KEEPALIVE_SECONDS
from stackctl.stack import Stack
from tests.reliability.conftest import record
from tests.reliability.support import inventory_db, order_body, orders_db, query

CONCURRENT = 500
SENDS = 3  # a request whose answer was lost is sent again, up to this many times in all


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:
    return shared_stack


async def burst(
    stack: Stack, sku: str, quantity: int, keys: int, copies: int
) -> tuple[list[tuple[str, httpx.Response]], list[int], float, int]:
    """``keys`` x ``copies`` concurrent orders (copies share a key and body), while the stock row
    is read from inventory-service's database (WAL: readers never block the writer) as fast as
    it goes. Returns the responses, the stock levels seen, the wall time, the answers lost."""
    # Idle connections let go before uvicorn's 5 s keep-alive closes them, as the services'
    # own client does (servicekit.http_client.KEEPALIVE_SECONDS).
    limits = httpx.Limits(max_connections=CONCURRENT + 10, keepalive_expiry=KEEPALIVE_SECONDS)
    sql = "SELECT available FROM stock WHERE sku = ?"
    base_url = stack.gateway_url
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        body = order_body(sku, quantity)
        names = [uuid.uuid4().hex for _ in range(keys)]
        seen: list[int] = []
        lost: list[str] = []
        done = asyncio.Event()

        async def one(key: str) -> tuple[str, httpx.Response]:
            headers = {"Idempotency-Key": key}
            for _ in range(SENDS - 1):
                try:
                    return key, await client.post("/api/orders", json=body, headers=headers)
                except httpx.RemoteProtocolError:
                    # An answer lost on the way (a kept-alive connection closed as it was reused:
                    # seen once or twice in 500 on a loaded 2-core machine, the gateway's log
                    # showing every request answered): what a client does with an
                    # Idempotency-Key is send it again, and that is what these tests check.
                    lost.append(key)
            return key, await client.post("/api/orders", json=body, headers=headers)

        async def watch() -> None:
            while not done.is_set():
                [(level,)] = await asyncio.to_thread(query, inventory_db(stack), sql, (sku,))
                seen.append(level)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        started = time.monotonic()
        responses = await asyncio.gather(*(one(k) for k in names for _ in range(copies)))
        elapsed = time.monotonic() - started
        done.set()
        await watcher
        seen.append((await get_again_if_lost(client, f"/api/inventory/{sku}")).json()["available"])
    return responses, seen, elapsed, len(lost)


async def get_again_if_lost(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """A GET whose connection the server closed as it was reused is sent again, as RFC 9110
    (9.2.2) lets a client do with an idempotent request; seen after a burst on a loaded machine
    even with idle connections let go after KEEPALIVE_SECONDS (the cause is not pinned down)."""
    for _ in range(SENDS - 1):
        try:
            return await client.get(path)
        except httpx.RemoteProtocolError:
            continue
    return await client.get(path)


def orders_for(stack: Stack, sku: str) -> list[str]:
    rows = query(orders_db(stack), "SELECT order_id, items FROM orders")
    return [order_id for order_id, items in rows if any(i["sku"] == sku for i in json.loads(items))]


def check(responses: list[tuple[str, httpx.Response]]) -> dict[str, Any]:
    """No 5xx; refusals are out of stock (400) or a copy still in progress (409); one order id
    per key, repeated by every 201 copy."""
    statuses = Counter(r.status_code for _, r in responses)
    assert set(statuses) <= {201, 400, 409}, statuses
    for _, r in responses:
        if r.status_code == 400:
            assert r.json()["title"] == "Out of stock", r.json()
    per_key: dict[str, set[str]] = defaultdict(set)
    for key, r in responses:
        if r.status_code == 201:
            per_key[key].add(r.json()["orderId"])
    assert all(len(ids) == 1 for ids in per_key.values()), "two orders under one key"
    replayed = sum(r.headers.get("idempotent-replayed") == "true" for _, r in responses)
    return {
        "statuses": dict(statuses),
        "replayed": replayed,
        "orders": {next(iter(ids)) for ids in per_key.values()},
        "keys": per_key,
    }


def test_limited_edition_sells_exactly_its_five(stack: Stack) -> None:
    sku = "LIMITED-EDITION"
    assert httpx.get(f"{stack.gateway_url}/api/inventory/{sku}").json()["available"] == 5
    responses, seen, elapsed, lost = asyncio.run(burst(stack, sku, 1, 100, 5))
    assert len(responses) == CONCURRENT
    result = check(responses)
    assert len(result["orders"]) == 5
    assert min(seen) >= 0 and seen[-1] == 0
    assert sorted(orders_for(stack, sku)) == sorted(result["orders"]), "stored == answered"
    record(
        "concurrency LIMITED-EDITION",
        concurrent=CONCURRENT,
        stock=5,
        keys=100,
        copies_per_key=5,
        wall_s=round(elapsed, 1),
        statuses=result["statuses"],
        orders=len(result["orders"]),
        lowest_stock_seen=min(seen),
        stock_reads=len(seen),
        answers_lost_and_retried=lost,
    )


def test_more_demand_than_stock_sells_all_it_can_once_per_key(stack: Stack) -> None:
    sku, quantity, stock = "SKU789", 3, 500
    assert httpx.get(f"{stack.gateway_url}/api/inventory/{sku}").json()["available"] == stock
    responses, seen, elapsed, lost = asyncio.run(burst(stack, sku, quantity, 250, 2))
    result = check(responses)
    sold = quantity * len(result["orders"])
    left = seen[-1]
    # 250 keys want 750; stock is taken until less than one order's quantity remains.
    assert sold + left == stock and left < quantity, (sold, left)
    assert min(seen) >= 0
    assert sorted(orders_for(stack, sku)) == sorted(result["orders"])

    # Retrying every key afterwards: the same order for the winners, nothing new for the rest.
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        for key in {k for k, _ in responses}:
            again = client.post(
                "/api/orders", json=order_body(sku, quantity), headers={"Idempotency-Key": key}
            )
            if key in result["keys"]:
                assert again.status_code == 201
                assert again.headers["idempotent-replayed"] == "true"
                assert {again.json()["orderId"]} == result["keys"][key]
            else:
                assert again.status_code == 400, again.text
    assert sorted(orders_for(stack, sku)) == sorted(result["orders"]), "the retries added none"
    record(
        "concurrency SKU789",
        concurrent=len(responses),
        stock=stock,
        quantity_per_order=quantity,
        keys=250,
        copies_per_key=2,
        wall_s=round(elapsed, 1),
        statuses=result["statuses"],
        orders=len(result["orders"]),
        units_sold=sold,
        left=left,
        answers_lost_and_retried=lost,
    )
