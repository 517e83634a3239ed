"""The gateway SIGKILLed in the middle of an order with an ``Idempotency-Key``, at each stage of
the saga: after a restart, retries with the same key end in one order or none, never 409 for
ever, and the stock agrees (sold + available = before).

A stage is held with a per-request latency fault in the callee (baggage, switched on for this
stack), so the kill lands while that call is in flight: one shorter than the downstream timeout
(the callee commits after the gateway died), one longer (the callee's deadline check refuses to
commit). The retry gets 409 with ``Retry-After`` while the dead gateway's calls may still
commit, then takes the lease over and answers 201 with the order the dead gateway started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from stackctl.stack import Stack
from tests.reliability.conftest import SENT_SECRETS, StackFactory, record
from tests.reliability.support import (
    available,
    inventory_db,
    order_body,
    query,
    stored_order_ids,
    wait_until,
)

SKU = "SKU789"
QUANTITY = 2
TIMEOUT_SECONDS = 2  # the gateway's downstream timeout here: a dead owner's calls end by then
# (stage, callee held, how long: shorter than the timeout commits late, longer never commits)
STAGES = [
    ("reserve", "inventory-service", 1200),
    ("reserve", "inventory-service", 3000),
    ("store", "order-service", 1200),
    ("store", "order-service", 3000),
    ("notify", "notification-service", 800),
]


@pytest.fixture(scope="module")
def stack(stacks: StackFactory) -> Iterator[Stack]:
    env = {"FAULT_BAGGAGE_ANONYMOUS": "true", "DOWNSTREAM_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS)}
    with stacks.running("gateway-crash", env) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=15) as client:
        yield client


def gateway_db(stack: Stack) -> Path:
    return stack.data_dir / "api-gateway" / "gateway.db"


def lease(stack: Stack, key: str) -> tuple[str, str]:
    [row] = query(
        gateway_db(stack), "SELECT state, order_id FROM idempotency_keys WHERE key = ?", (key,)
    )
    return row


def reached(stack: Stack, client: httpx.Client, stage: str, stock: int, orders: int) -> bool:
    """The saga is in ``stage``'s call (the previous steps are committed)."""
    if stage == "reserve":
        return True  # the request is held in inventory-service from its first step
    if stage == "store":
        return available(client, SKU) == stock - QUANTITY
    return len(stored_order_ids(stack)) == orders + 1


def retry_until_answered(
    client: httpx.Client, key: str, timeout: float, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, list[int]]:
    """Retry as a client should: on 409 wait ``Retry-After``, within ``timeout``."""
    waits: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        response = client.post(
            "/api/orders",
            json=order_body(SKU, QUANTITY),
            headers={"Idempotency-Key": key, **(headers or {})},
        )
        if response.status_code != 409 or time.monotonic() > deadline:
            return response, waits
        waits.append(int(response.headers["Retry-After"]))
        time.sleep(min(waits[-1], 5))


def crash_during(
    stack: Stack, client: httpx.Client, key: str, stage: str, callee: str, held_ms: int
) -> str:
    """Send the order with ``key``, SIGKILL the gateway while ``callee`` holds ``stage``'s call
    ``held_ms``, restart it; the order id the dead gateway's lease names."""
    gateway = stack.process("api-gateway")
    stock, orders = available(client, SKU), len(stored_order_ids(stack))
    headers = {"Idempotency-Key": key, "baggage": f"fault.{callee}=latency:{held_ms}"}
    first: list[BaseException | httpx.Response] = []

    def send() -> None:
        try:
            first.append(
                client.post("/api/orders", json=order_body(SKU, QUANTITY), headers=headers)
            )
        except httpx.TransportError as exc:
            first.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    wait_until(lambda: reached(stack, client, stage, stock, orders), 10, f"the {stage} stage")
    time.sleep(0.3)  # inside the held call
    gateway.kill()
    thread.join(10)
    assert first and isinstance(first[0], httpx.TransportError), "the kill cut the first request"
    state, order_id = lease(stack, key)
    assert state == "in_progress"
    gateway.start()
    gateway.wait_healthy(time.monotonic() + 30)
    return order_id


def consistent(stack: Stack, client: httpx.Client, stock: int, orders: int, sold: int) -> None:
    """``sold`` orders more than before, each with its stock taken once, no stock held for no
    order."""
    assert len(stored_order_ids(stack)) == orders + sold, "one order, not two"
    assert available(client, SKU) == stock - sold * QUANTITY, "sold + available = before"
    reserved = query(
        inventory_db(stack), "SELECT reservation_id FROM reservations WHERE status = 'reserved'"
    )
    assert {row[0] for row in reserved} == stored_order_ids(stack), "no stock held for no order"


@pytest.mark.parametrize(
    ("stage", "callee", "held_ms"), STAGES, ids=[f"{s}-{ms}ms" for s, _, ms in STAGES]
)
def test_gateway_killed_mid_order_then_retry_completes_it(
    stack: Stack, client: httpx.Client, stage: str, callee: str, held_ms: int
) -> None:
    key = f"crash-{stage}-{held_ms}-{time.monotonic_ns()}"
    stock, orders = available(client, SKU), len(stored_order_ids(stack))
    started_order = crash_during(stack, client, key, stage, callee, held_ms)
    restarted = time.monotonic()
    response, waits = retry_until_answered(client, key, timeout=30)
    answered_in = time.monotonic() - restarted

    assert response.status_code == 201, response.text
    order_id = response.json()["orderId"]
    SENT_SECRETS.add(order_id)  # the leak scan: no span or log line of the run may hold it
    assert order_id == started_order, "the order the dead gateway started, finished"
    assert all(w <= TIMEOUT_SECONDS + 1 for w in waits), "409 only while its calls may commit"
    assert lease(stack, key) == ("done", order_id)
    assert order_id in stored_order_ids(stack)
    consistent(stack, client, stock, orders, sold=1)
    replay = client.post(
        "/api/orders", json=order_body(SKU, QUANTITY), headers={"Idempotency-Key": key}
    )
    assert replay.json()["orderId"] == order_id and replay.headers["Idempotent-Replayed"] == "true"
    record(
        f"gateway SIGKILLed during {stage} ({callee} held {held_ms} ms)",
        answer="201, the same order",
        retries_409=len(waits),
        retry_after_s=waits,
        restart_to_201_s=round(answered_in, 1),
    )


def test_a_take_over_that_fails_compensates_and_frees_the_key(
    stack: Stack, client: httpx.Client
) -> None:
    """The gateway dies with the stock reserved; order-service refuses the retry's store: the
    retry releases the reservation and answers the error (no order, stock back), and the next
    retry with the key places the order afresh."""
    key = f"crash-then-fail-{time.monotonic_ns()}"
    stock, orders = available(client, SKU), len(stored_order_ids(stack))
    crash_during(stack, client, key, "store", "order-service", 3000)
    failing = {"baggage": "fault.order-service=error:503"}
    response, _ = retry_until_answered(client, key, timeout=30, headers=failing)
    assert response.status_code == 503, response.text
    consistent(stack, client, stock, orders, sold=0)
    assert not query(gateway_db(stack), "SELECT 1 FROM idempotency_keys WHERE key = ?", (key,))
    again, waits = retry_until_answered(client, key, timeout=10)
    assert again.status_code == 201 and not waits, again.text
    SENT_SECRETS.add(again.json()["orderId"])
    consistent(stack, client, stock, orders, sold=1)
    record("gateway SIGKILLed during store, the retry's store refused", answer="503, then 201")


def test_concurrent_retries_after_a_crash_make_one_order(
    stack: Stack, client: httpx.Client
) -> None:
    """Several clients retry one orphaned key at once: one takes the lease over, the others get
    409, then the replay; one order."""
    key = f"crash-concurrent-{time.monotonic_ns()}"
    stock, orders = available(client, SKU), len(stored_order_ids(stack))
    crash_during(stack, client, key, "store", "order-service", 1200)
    time.sleep(TIMEOUT_SECONDS + 1)  # past the grace: every retry may take the lease over
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: retry_until_answered(client, key, 20)[0], range(6)))
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    ids = {r.json()["orderId"] for r in answers}
    assert len(ids) == 1
    SENT_SECRETS.update(ids)
    consistent(stack, client, stock, orders, sold=1)
