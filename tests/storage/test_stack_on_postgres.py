"""The real stack (stackctl: Jaeger, the collector, the four services as processes) on one
PostgreSQL: a gateway SIGKILLed mid-order is taken over once its heartbeat stops, the
compensation sweep works without orders, and the database password reaches no log line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from stackctl.stack import Stack
from tests.postgres import Cluster
from tests.reliability.conftest import StackFactory
from tests.reliability.support import available, order_body, wait_until

SKU = "SKU789"
QUANTITY = 2
TIMEOUT_SECONDS = 2  # the gateway's downstream timeout: the take-over grace is this + 0.5 s


@pytest.fixture(scope="module")
def pg_stack(
    tmp_path_factory: pytest.TempPathFactory, postgres: Cluster
) -> Iterator[tuple[Stack, str]]:
    url = postgres.new_database()
    factory = StackFactory(tmp_path_factory)
    env = {
        "DATABASE_URL": url,
        "FAULT_BAGGAGE_ANONYMOUS": "true",
        "DOWNSTREAM_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "COMPENSATION_RETRY_SECONDS": "1",
    }
    stack = factory.start("postgres-stack", env)
    try:
        yield stack, url
    finally:
        stack.down(report=lambda line: None)


def select(url: str, statement: str, *values: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(statement, values).fetchall()


def test_a_gateway_killed_mid_order_is_taken_over_when_its_heartbeat_stops(
    pg_stack: tuple[Stack, str],
) -> None:
    stack, url = pg_stack
    key = f"crash-{time.monotonic_ns()}"
    client = httpx.Client(base_url=stack.gateway_url, timeout=15)
    stock = available(client, SKU)
    # order-service holds the store longer than the timeout: it never commits.
    headers = {"Idempotency-Key": key, "baggage": "fault.order-service=latency:3000"}
    cut: list[Any] = []

    def send() -> None:
        try:
            cut.append(client.post("/api/orders", json=order_body(SKU, QUANTITY), headers=headers))
        except httpx.TransportError as exc:
            cut.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    wait_until(lambda: available(client, SKU) == stock - QUANTITY, 10, "the store stage")
    time.sleep(0.3)
    gateway = stack.process("api-gateway")
    gateway.kill()
    thread.join(10)
    assert cut and isinstance(cut[0], httpx.TransportError)
    [lease] = select(
        url, "SELECT state, order_id FROM api_gateway.idempotency_keys WHERE key = %s", key
    )
    assert lease["state"] == "in_progress"
    gateway.start()
    gateway.wait_healthy(time.monotonic() + 30)

    waits: list[int] = []
    while True:
        response = client.post(
            "/api/orders", json=order_body(SKU, QUANTITY), headers={"Idempotency-Key": key}
        )
        if response.status_code != 409 or len(waits) > 10:
            break
        waits.append(int(response.headers["Retry-After"]))
        time.sleep(waits[-1])
    assert response.status_code == 201, response.text
    assert response.json()["orderId"] == lease["order_id"], "the dead gateway's order, finished"
    # The lease ended with the heartbeat (grace + two beats), not IDEMPOTENCY_LEASE_SECONDS.
    assert sum(waits) <= TIMEOUT_SECONDS + 0.5 + 2 + 1, waits
    assert available(client, SKU) == stock - QUANTITY, "sold + available = before"
    [done] = select(url, "SELECT state FROM api_gateway.idempotency_keys WHERE key = %s", key)
    assert done["state"] == "done"
    client.close()


def test_the_sweep_carries_out_a_pending_release_without_any_order(
    pg_stack: tuple[Stack, str],
) -> None:
    stack, url = pg_stack
    client = httpx.Client(base_url=stack.gateway_url, timeout=15)
    stock = available(client, SKU)
    reserve = {
        "reservationId": f"left-{time.monotonic_ns()}",
        "items": [{"sku": SKU, "quantity": 3}],
    }
    inventory = stack.process("inventory-service")
    health = httpx.URL(inventory.health_url)
    reserved = httpx.post(health.copy_with(path="/inventory/reserve"), json=reserve)
    assert reserved.status_code == 201, reserved.text
    assert available(client, SKU) == stock - 3
    # What a gateway that could not reach inventory-service leaves, then went away.
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO api_gateway.pending_releases (reservation_id) VALUES (%s)",
            (reserve["reservationId"],),
        )
    wait_until(lambda: available(client, SKU) == stock, 15, "the sweep's release")
    wait_until(
        lambda: not select(url, "SELECT 1 FROM api_gateway.pending_releases"), 5, "an empty backlog"
    )
    client.close()


def test_the_database_password_is_in_no_log_line(pg_stack: tuple[Stack, str]) -> None:
    stack, url = pg_stack
    password = url.split(":")[2].split("@")[0]
    logs = sorted((stack.run_dir / "logs").glob("*.log"))
    assert logs
    for log in logs:
        assert password not in log.read_text(errors="replace"), log.name
