"""The multi-replica tier: one stack of real processes for the whole tier, as
`make up DB=postgres REPLICAS=2` runs it: a PostgreSQL server, Jaeger, the collector, two
replicas of each service and HAProxy on the services' usual ports, on free loopback ports, its
run and data directories in a temporary directory (see docs/scale-out.md, "Replicas").

A test that stops or kills replicas brings them back after itself (:func:`restored`), so the
tests keep one stack and run in any order. A failing test gets the tail of each process's log
in its report.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from stackctl.ports import Ports
from stackctl.stack import Stack
from tests.process_logs import pytest_runtest_makereport  # noqa: F401 (registers the hook)
from tests.scale_out.conftest import reachable_dir

REPLICAS = 2
ADMIN_TOKEN = f"replicas-admin-{secrets.token_hex(8)}"
COMPENSATION_RETRY_SECONDS = 1


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with reachable_dir(request, "replicas-") as base:
        stack = Stack(
            run_dir=base / "run",
            data_dir=base / "data",
            ports=Ports.free(),
            env={
                "ADMIN_TOKEN": ADMIN_TOKEN,
                "FAULT_SEED": "7",
                "COMPENSATION_RETRY_SECONDS": str(COMPENSATION_RETRY_SECONDS),
                # The lease is then the saga's worst case (about 29 s), which a client that
                # follows the Retry-After of another replica's lease waits out.
                "IDEMPOTENCY_LEASE_SECONDS": "1",
            },
            with_prometheus=False,
            with_browser=False,
            database="postgres",
            replicas=REPLICAS,
        )
        try:
            stack.up(timeout=180, report=lambda line: None)
            yield stack
        finally:
            stack.down(report=lambda line: None)


@pytest.fixture
def restored(stack: Stack) -> Iterator[Stack]:
    """The stack, with every process a test stopped or killed started again after it (and
    back in the balancer)."""
    yield stack
    stack.up(timeout=120, report=lambda line: None)


def query(stack: Stack, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of one statement on the stack's PostgreSQL (tables are schema-qualified:
    ``order_service.orders``)."""
    url = stack.database_url
    assert url is not None
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def set_stock(stack: Stack, sku: str, available: int) -> None:
    query(
        stack, "UPDATE inventory_service.stock SET available = %s WHERE sku = %s", (available, sku)
    )


def available(stack: Stack, sku: str) -> int:
    """Units in stock, as inventory-service answers through the balancer."""
    url = f"{stack.service_url('inventory-service')}/inventory/{sku}"
    return int(httpx.get(url, timeout=10).json()["available"])


def stored_orders(stack: Stack) -> dict[str, dict[str, Any]]:
    """Every order order-service holds, by id."""
    rows = query(stack, "SELECT order_id, status, items FROM order_service.orders")
    return {row["order_id"]: row for row in rows}


RESULTS: list[tuple[str, dict[str, Any]]] = []


def record(scenario: str, **numbers: Any) -> None:
    """Measured numbers, printed at the end of the run (docs/scale-out.md quotes them)."""
    RESULTS.append((scenario, numbers))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RESULTS:
        terminalreporter.section("replicas: measured")
        for scenario, numbers in RESULTS:
            terminalreporter.write_line(f"{scenario}: {json.dumps(numbers, sort_keys=True)}")


def wait_until(check: Any, timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not (last := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")
        time.sleep(0.2)
    return last
