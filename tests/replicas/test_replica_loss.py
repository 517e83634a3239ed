"""A replica of each service lost mid-load, through the balancer.

Stopped (SIGTERM): it finishes what it took, flushes its spans and exits; HAProxy routes new
requests to the other replica (a refused connection is retried there). No confirmed order is
missing from the database and every confirmed order's whole trace is in Jaeger. A request
HAProxy had just written to the replica as it closed can still be cut off (its client gets no
answer); drained in HAProxy first (``Stack.stop_replica``), none is.

Killed (SIGKILL): what it was doing is cut off; its callers see 502 and their sagas compensate.
No confirmed order is lost. Its spans still in the export buffer are lost (docs/scale-out.md):
so confirmed orders' traces are not asserted whole there.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from servicekit.storage.postgres import DB_SYSTEM as POSTGRESQL
from stackctl.orders import order_body
from stackctl.process import ManagedProcess
from stackctl.stack import Stack
from tests.replicas.conftest import record, stored_orders
from tests.scale_out.conftest import wait_for_order_trace

WORKERS = 6
LOSE_AFTER = 15  # answers before the replicas go, and sent after they went
MAX_ORDERS = 300


@dataclass
class Answer:
    status: int
    order_id: str | None
    trace_id: str | None
    after_loss: bool
    error: str | None = None  # what the client got instead of an answer


def under_load(
    stack: Stack,
    lose: Callable[[ManagedProcess], None],
    replica: int,
    most: int = MAX_ORDERS,
    workers: int = WORKERS,
) -> list[Answer]:
    """Orders through the balancer from ``workers`` clients; after ``LOSE_AFTER`` answers,
    ``lose`` is applied to replica ``replica`` (0-based) of every service, and the orders go on
    until ``LOSE_AFTER`` more were answered after that (``most`` orders at most)."""
    answers: list[Answer] = []
    lock, lost, enough = threading.Lock(), threading.Event(), threading.Event()
    began = threading.Event()

    def work(client: httpx.Client) -> None:
        while not enough.is_set():
            status, body, error = 0, {}, None  # 0: no answer at all
            after_loss = lost.is_set()
            try:
                response = client.post("/api/orders", json=order_body())
                status = response.status_code
                body = response.json()
            except (httpx.TransportError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            with lock:
                answers.append(
                    Answer(status, body.get("orderId"), body.get("traceId"), after_loss, error)
                )
                if len(answers) >= LOSE_AFTER:
                    began.set()
                after = sum(a.after_loss for a in answers)
                if after >= LOSE_AFTER or len(answers) >= most:
                    enough.set()

    client = httpx.Client(base_url=stack.gateway_url, timeout=120)
    with client, ThreadPoolExecutor(workers) as pool:
        running = [pool.submit(work, client) for _ in range(workers)]
        began.wait(timeout=120)
        for procs in stack.replica_processes.values():
            lose(procs[replica])
        lost.set()
        for worker in running:
            worker.result()
    return answers


def check_confirmed_stored(stack: Stack, answers: list[Answer]) -> list[Answer]:
    confirmed = [a for a in answers if a.status == 201]
    stored = stored_orders(stack)
    missing = [a.order_id for a in confirmed if a.order_id not in stored]
    assert missing == [], "confirmed orders missing from the database"
    assert all(stored[a.order_id]["status"] == "confirmed" for a in confirmed)
    assert any(a.after_loss for a in confirmed), "the other replicas took the load on"
    return confirmed


def check_traces_whole(stack: Stack, confirmed: list[Answer]) -> None:
    for answer in confirmed:
        wait_for_order_trace(
            stack.jaeger_url, answer.trace_id, answer.order_id, timeout=60, db_system=POSTGRESQL
        )


def test_replicas_stopped_mid_load_lose_no_order_and_no_span(restored: Stack) -> None:
    stack = restored
    started = time.monotonic()
    answers = under_load(stack, ManagedProcess.stop, replica=0)
    confirmed = check_confirmed_stored(stack, answers)
    check_traces_whole(stack, confirmed)
    record(
        "replicas SIGTERM mid-load",
        orders=len(answers),
        statuses=dict(Counter(a.status for a in answers)),
        errors=sorted({a.error for a in answers if a.error}),
        confirmed_traces_whole=len(confirmed),
        wall_s=round(time.monotonic() - started, 1),
    )


def test_replicas_drained_then_stopped_mid_load_cut_no_request(restored: Stack) -> None:
    """``Stack.stop_replica``: HAProxy drains the replica before its SIGTERM, so not one
    request is cut off: every order is confirmed, its trace whole."""
    stack = restored
    answers = under_load(stack, stack.stop_replica, replica=0)
    assert Counter(a.status for a in answers) == {201: len(answers)}, [
        (a.status, a.error) for a in answers if a.status != 201
    ]
    check_traces_whole(stack, check_confirmed_stored(stack, answers))
    record("replicas drained, then SIGTERM, mid-load", orders=len(answers))


def test_replicas_killed_mid_load_lose_no_confirmed_order(restored: Stack) -> None:
    stack = restored
    answers = under_load(stack, ManagedProcess.kill, replica=1)
    confirmed = check_confirmed_stored(stack, answers)
    record(
        "replicas SIGKILL mid-load",
        orders=len(answers),
        statuses=dict(Counter(a.status for a in answers)),
        errors=sorted({a.error for a in answers if a.error}),
        confirmed=len(confirmed),
    )


def test_a_service_without_replicas_is_a_503_problem(restored: Stack) -> None:
    """Every inventory replica stopped: HAProxy answers for them, as a problem with
    ``Retry-After``, once its checks have taken them out; the gateway's order fails cleanly."""
    stack = restored
    for proc in stack.replica_processes["inventory-service"]:
        proc.stop()
    url = f"{stack.service_url('inventory-service')}/inventory/SKU123"
    response = httpx.get(url, timeout=10)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.json()["status"] == 503
    order = httpx.post(f"{stack.gateway_url}/api/orders", json=order_body(), timeout=60)
    assert order.status_code in (502, 503, 504), order.text
    assert order.headers["content-type"] == "application/problem+json"
    assert order.json()["traceId"], "the gateway's own problem, with its trace"


def test_a_rolling_restart_under_load_refuses_no_order(restored: Stack) -> None:
    """``Stack.restart_replica`` (what `make rolling-restart` does to each replica in turn):
    drained, stopped, started and back in HAProxy, with every order confirmed meanwhile."""
    stack = restored
    # Two clients, for as long as the four restarts (a few seconds each) take.
    answers = under_load(stack, stack.restart_replica, replica=1, most=3000, workers=2)
    assert Counter(a.status for a in answers) == {201: len(answers)}, [
        (a.status, a.error) for a in answers if a.status != 201
    ]
    check_confirmed_stored(stack, answers)
    assert all(proc.healthy() for procs in stack.replica_processes.values() for proc in procs)
    record("replicas restarted one by one, mid-load", orders=len(answers))
