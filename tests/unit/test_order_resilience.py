"""Idempotency, compensation, downstream failures and concurrency of the order flow."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.unit.conftest import ORDER, InProcessStack, ProcessBoundaryTransport, build_stack

pytestmark = pytest.mark.anyio


class BrokenTransport(httpx.AsyncBaseTransport):
    """A service that is down (connection refused) or never answers (read timeout).

    Like a real transport, a hang ends when the request's read timeout runs out.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        await asyncio.sleep(request.extensions["timeout"]["read"])
        raise httpx.ReadTimeout("timed out", request=request)


def _break(target: str, mode: str):  # type: ignore[no-untyped-def]
    def wrap(name: str, app: FastAPI) -> httpx.AsyncBaseTransport:
        return BrokenTransport(mode) if name == target else ProcessBoundaryTransport(app=app)

    return wrap


async def test_same_idempotency_key_returns_same_order_and_reserves_once(
    stack: InProcessStack,
) -> None:
    before = stack.available("SKU123")
    headers = {"Idempotency-Key": "order-abc-1"}
    first = await stack.client.post("/api/orders", json=ORDER, headers=headers)
    second = await stack.client.post("/api/orders", json=ORDER, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["orderId"] == second.json()["orderId"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert stack.available("SKU123") == before - 2

    other = {**ORDER, "userId": 2}
    conflict = await stack.client.post("/api/orders", json=other, headers=headers)
    assert conflict.status_code == 422
    assert "Idempotency-Key" in conflict.json()["title"]


async def test_failed_order_frees_its_idempotency_key(stack: InProcessStack) -> None:
    headers = {"Idempotency-Key": "retry-me"}
    order = {**ORDER, "items": [{"sku": "OUT-OF-STOCK", "quantity": 1, "price": 1.0}]}
    assert (await stack.client.post("/api/orders", json=order, headers=headers)).status_code == 400
    assert (await stack.client.post("/api/orders", json=order, headers=headers)).status_code == 400


@pytest.mark.parametrize(("mode", "status"), [("down", 503), ("hang", 504)])
async def test_order_service_failure_releases_the_reservation(
    tmp_path: Path, mode: str, status: int
) -> None:
    stack = build_stack(
        tmp_path,
        _break("order-service", mode),
        {"api-gateway": {"downstream_timeout_seconds": 0.5}},
    )
    before = stack.available("SKU123")
    response = await stack.client.post("/api/orders", json=ORDER)
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["service"] == "order-service"
    assert stack.available("SKU123") == before, "compensation gave the stock back"

    spans = stack.spans(problem["traceId"])
    names = {s.name for s in spans}
    assert "compensate_reservation" in names
    release = [s for s in spans if s.attributes.get("url.full", "").endswith("/inventory/release")]
    assert len(release) == 1
    failed = [s for s in spans if s.attributes.get("url.full", "").endswith("/orders") and s.status]
    assert failed and failed[0].status.status_code.name == "ERROR"
    await stack.client.aclose()


async def test_inventory_down_is_503_and_stores_nothing(tmp_path: Path) -> None:
    stack = build_stack(tmp_path, _break("inventory-service", "down"))
    response = await stack.client.post("/api/orders", json=ORDER)
    assert response.status_code == 503
    assert response.json()["service"] == "inventory-service"
    assert not [s for s in stack.spans() if s.name == "process_order"]
    await stack.client.aclose()


@pytest.mark.parametrize("mode", ["down", "hang"])
async def test_notification_failure_never_fails_the_order(tmp_path: Path, mode: str) -> None:
    stack = build_stack(
        tmp_path,
        _break("notification-service", mode),
        {"api-gateway": {"notify_timeout_seconds": 0.3}},
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await stack.client.post("/api/orders", json=ORDER)
    assert response.status_code == 201
    assert response.json()["notification"] == "failed"
    assert loop.time() - started < 2.0, "bounded by the notification timeout"
    await stack.client.aclose()


async def test_concurrent_orders_never_oversell(tmp_path: Path) -> None:
    # 200 orders at once in one process queue behind each other: a generous downstream timeout
    # keeps a slow machine from turning the queueing into 504s, which is not what this tests.
    stack = build_stack(tmp_path, overrides={"api-gateway": {"downstream_timeout_seconds": 120}})
    inventory = stack.apps["inventory-service"].state.store.db
    with inventory.transaction() as cur:
        cur.execute("UPDATE stock SET available = 50 WHERE sku = 'SKU789'")
    order = {**ORDER, "items": [{"sku": "SKU789", "quantity": 1, "price": 3.5}]}
    responses = await asyncio.gather(
        *(stack.client.post("/api/orders", json=order) for _ in range(200))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 50
    assert statuses.count(400) == 150
    assert stack.available("SKU789") == 0
    orders = stack.apps["order-service"].state.store.db
    with orders.read(traced=False) as cur:
        assert cur.execute("SELECT count(*) AS n FROM orders").fetchone()["n"] == 50
    await stack.client.aclose()


async def test_order_service_commits_nothing_after_the_callers_deadline(tmp_path: Path) -> None:
    stack = build_stack(tmp_path, overrides={"order-service": {"faults": "latency:300"}})
    order_app = stack.apps["order-service"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=order_app), base_url="http://order.test"
    ) as client:
        body = {
            "orderId": "late-1",
            "userId": 1,
            "reservationId": "late-1",
            "items": [{"sku": "SKU123", "quantity": 1, "price": 1.0}],
        }
        late = await client.post("/orders", json=body, headers={"request-timeout-ms": "200"})
        assert late.status_code == 504
        assert order_app.state.store.get("late-1") is None, "rolled back"
        on_time = await client.post("/orders", json=body, headers={"request-timeout-ms": "2000"})
        assert on_time.status_code == 201
    await stack.client.aclose()


class CrashAfterCommitTransport(ProcessBoundaryTransport):
    """A service that does the first request to ``path``, then dies before answering, and
    refuses connections until ``down`` is cleared."""

    def __init__(self, app: FastAPI, path: str) -> None:
        super().__init__(app=app)
        self.path = path
        self.crashed = self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        response = await super().handle_async_request(request)
        if request.url.path == self.path and not self.crashed:
            self.crashed = self.down = True
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return response


def _crash_after_commit(target: str, path: str):  # type: ignore[no-untyped-def]
    """(a transport factory for ``build_stack`` in which ``target`` crashes after committing
    ``path``, the list that will hold that service's transport)."""
    crashing: list[CrashAfterCommitTransport] = []

    def wrap(name: str, app: FastAPI) -> httpx.AsyncBaseTransport:
        if name != target:
            return ProcessBoundaryTransport(app=app)
        crashing.append(CrashAfterCommitTransport(app, path))
        return crashing[0]

    return wrap, crashing


async def test_a_reservation_lost_in_a_crash_is_released_once_inventory_is_back(
    tmp_path: Path,
) -> None:
    """The reply to a committed reservation is lost and inventory stays down: the gateway keeps
    the release pending in its own database and does it before the next order."""
    wrap, inventory = _crash_after_commit("inventory-service", "/inventory/reserve")
    stack = build_stack(tmp_path, wrap)
    before = stack.available("SKU123")
    response = await stack.client.post("/api/orders", json=ORDER)
    assert response.status_code == 503, response.text
    assert stack.available("SKU123") == before - 2, "committed, and the release could not run"
    pending = stack.apps["api-gateway"].state.flow.releases
    assert len(pending.ids()) == 1 and pending.count == 1

    inventory[0].down = False
    second = await stack.client.post("/api/orders", json=ORDER)
    assert second.status_code == 201, second.text
    assert stack.available("SKU123") == before - 2, "the lost reservation was given back"
    assert pending.ids() == [] and pending.count == 0
    [retry] = [
        s
        for s in stack.spans()
        if s.name == "compensate_reservation" and s.status.status_code.name != "ERROR"
    ]
    assert retry.parent is None, "the retry is a trace of its own, not the new order's"
    await stack.client.aclose()


async def test_an_order_stored_before_a_crash_is_deleted_once_order_service_is_back(
    tmp_path: Path,
) -> None:
    """order-service stores the order, then its connection breaks: the client gets 503 and its
    stock back at once, and the stored order is deleted before the next order."""
    wrap, orders = _crash_after_commit("order-service", "/orders")
    stack = build_stack(tmp_path, wrap)
    store = stack.apps["order-service"].state.store
    before = stack.available("SKU123")
    response = await stack.client.post("/api/orders", json=ORDER)
    assert response.status_code == 503, response.text
    assert stack.available("SKU123") == before, "compensation gave the stock back at once"
    cancellations = stack.apps["api-gateway"].state.flow.cancellations
    [order_id] = cancellations.ids()
    assert store.get(order_id) is not None, "stored before the connection broke"

    orders[0].down = False
    second = await stack.client.post("/api/orders", json=ORDER)
    assert second.status_code == 201, second.text
    assert store.get(order_id) is None, "the order its client was told failed is gone"
    assert cancellations.ids() == [] and cancellations.count == 0
    assert stack.available("SKU123") == before - 2, "only the second order holds stock"
    await stack.client.aclose()


async def test_the_sweep_gives_a_lost_reservation_back_without_a_new_order(
    tmp_path: Path,
) -> None:
    """As above, but no order follows: the periodic sweep does the release, in one
    ``compensation_sweep`` trace; a sweep with nothing pending makes no span."""
    wrap, inventory = _crash_after_commit("inventory-service", "/inventory/reserve")
    stack = build_stack(tmp_path, wrap)
    before = stack.available("SKU123")
    assert (await stack.client.post("/api/orders", json=ORDER)).status_code == 503
    flow = stack.apps["api-gateway"].state.flow
    inventory[0].down = False
    stack.exporter.clear()
    await flow.sweep()
    assert stack.available("SKU123") == before, "given back"
    assert flow.releases.ids() == [] and flow.releases.count == 0
    sweep = next(s for s in stack.spans() if s.name == "compensation_sweep")
    assert sweep.parent is None and sweep.attributes["compensation.pending_releases"] == 1
    release = next(s for s in stack.spans() if s.name == "compensate_reservation")
    assert release.parent is not None and release.parent.span_id == sweep.context.span_id
    stack.exporter.clear()
    await flow.sweep()
    assert stack.spans() == []
    await stack.client.aclose()


def test_a_periodic_job_runs_while_the_app_serves_and_survives_its_failures(
    tmp_path: Path,
) -> None:
    """``ServiceApp.every``: started with the app's lifespan, a failing run logged and the next
    one run all the same."""
    from fastapi.testclient import TestClient

    from order_service.app import OrderSettings
    from order_service.app import create_app as create_order

    app = create_order(OrderSettings(data_dir=tmp_path), InMemorySpanExporter())
    runs: list[int] = []
    second_run = threading.Event()

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("the first run fails")
        second_run.set()

    app.every(0.01, job)
    with TestClient(app):
        assert second_run.wait(10), "the job ran again after its failure"
