"""Services killed or stopped under load: clients get a prompt, honest answer; the stock, the
reservations and the stored orders stay consistent; traffic recovers when the service is back.

Requests are held "in flight" inside a service on purpose with a per-request baggage fault
(``fault.order-service=latency:...``), which delays them in the fault middleware before the route
runs, so the test knows exactly which requests the kill or SIGTERM caught mid-way.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from servicekit.telemetry import SDK_DEFAULTS
from stackctl.process import ManagedProcess
from stackctl.stack import Stack
from stackctl.traces import StoredTrace, wait_for_trace
from tests.reliability.conftest import StackFactory, record
from tests.reliability.support import (
    PROBLEM_JSON,
    Load,
    OrderOutcome,
    available,
    baseline_order,
    inventory_db,
    order_body,
    place,
    query,
    stored_order_ids,
    wait_for_traces,
    wait_until,
)

LOAD_SKU = "SKU456"  # the background traffic
HELD_SKU = "SKU789"  # the requests held in flight, so their reservations can be watched
HELD = 4
PROMPT_SECONDS = 1.0  # "promptly": well under the gateway's 5 s downstream timeout


@pytest.fixture(scope="module")
def stack(stacks: StackFactory) -> Iterator[Stack]:
    # The held orders ask for their latency in baggage, as a demo would: switched on here.
    with stacks.running("service-failures", env={"FAULT_BAGGAGE_ANONYMOUS": "true"}) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=15) as client:
        yield client


@pytest.fixture(scope="module")
def per_order(stack: Stack, client: httpx.Client) -> Counter[str]:
    return baseline_order(stack, client)


@pytest.fixture(autouse=True)
def all_running(stack: Stack) -> Iterator[None]:
    """Each test starts and ends with every process up, whatever the previous one did."""
    stack.up(timeout=60, report=lambda line: None)
    yield
    stack.up(timeout=60, report=lambda line: None)


def hold(pool: ThreadPoolExecutor, stack: Stack, ms: int) -> list[Future[OrderOutcome]]:
    """Send HELD orders that wait ``ms`` in order-service; return once they are in flight there
    (their stock is reserved, the step just before the gateway calls order-service)."""
    client = httpx.Client(base_url=stack.gateway_url, timeout=15)
    before = available(client, HELD_SKU)
    headers = {"baggage": f"fault.order-service=latency:{ms}"}
    futures = [pool.submit(place, client, order_body(HELD_SKU), headers) for _ in range(HELD)]
    wait_until(lambda: available(client, HELD_SKU) == before - HELD, 10, "held orders reserved")
    return futures


def consistent(stack: Stack, client: httpx.Client, stock: dict[str, int], ok: list[OrderOutcome]):  # type: ignore[no-untyped-def]
    """Stock sold == orders answered 201; every reservation is an order or was released."""
    sold = Counter(o.body["items"][0]["sku"] for o in ok)
    for sku, before in stock.items():
        assert available(client, sku) == before - sold[sku], f"stock of {sku}"
    reserved = {
        row[0]
        for row in query(
            inventory_db(stack), "SELECT reservation_id FROM reservations WHERE status='reserved'"
        )
    }
    assert reserved == stored_order_ids(stack), "a reservation without an order, or the reverse"


def failed_client_span(trace: StoredTrace, path: str) -> dict:
    [span] = [
        s
        for s in trace.spans
        if StoredTrace.tags(s).get("span.kind") == "client"
        and str(StoredTrace.tags(s).get("url.full", "")).endswith(path)
    ]
    return span


def is_error(span: dict) -> bool:
    tags = StoredTrace.tags(span)
    return tags.get("otel.status_code") == "ERROR" or tags.get("error") is True


def test_order_service_killed_mid_run(stack: Stack, client: httpx.Client, per_order) -> None:
    stock = {sku: available(client, sku) for sku in (LOAD_SKU, HELD_SKU)}
    orders_before = stored_order_ids(stack)
    order_service = stack.process("order-service")
    with ThreadPoolExecutor(HELD) as pool, Load(stack.gateway_url, order_body(LOAD_SKU)) as load:
        wait_until(lambda: len(load.outcomes) >= 20, 20, "traffic flowing")
        held = hold(pool, stack, 5000)
        killed_at = time.monotonic()  # before: kill() returns once it is reaped
        order_service.kill()
        held_outcomes = [f.result(timeout=15) for f in held]
        wait_until(lambda: any(o.started > killed_at + 0.5 for o in load.outcomes), 10, "load")
        restarting_at = time.monotonic()
        order_service.start()
        order_service.wait_healthy(time.monotonic() + 30)
        back_at = time.monotonic()
        wait_until(
            lambda: sum(o.started > back_at for o in load.outcomes) >= 20, 20, "traffic after"
        )
    outcomes = load.outcomes + held_outcomes

    # The held requests and everything sent while it was down: 503 problem+json, promptly.
    down = [o for o in load.outcomes if killed_at <= o.started < restarting_at] + held_outcomes
    for o in down:
        assert o.status == 503, o.body
        assert o.headers["content-type"] == PROBLEM_JSON
        assert o.body["service"] == "order-service" and o.body["traceId"]
        assert o.started + o.elapsed - max(o.started, killed_at) < PROMPT_SECONDS, o.elapsed
    assert {o.status for o in load.outcomes if o.started + o.elapsed < killed_at} == {201}
    # Traffic recovered: every order sent once the service was back succeeded.
    assert {o.status for o in outcomes if o.started > back_at} == {201}

    # Nothing leaked or half-written: stock matches the 201s, no order without its reservation.
    ok = [o for o in outcomes if o.status == 201]
    assert stored_order_ids(stack) - orders_before == {o.order_id for o in ok}
    consistent(stack, client, stock, ok)

    # The trace of a held request: the failed call to order-service, then the compensation.
    trace = wait_for_trace(
        stack.jaeger_url,
        held_outcomes[0].trace_id or "",
        {"api-gateway", "inventory-service"},
        frozenset({"compensate_reservation", "POST /inventory/release"}),
    )
    span = failed_client_span(trace, "/orders")
    assert is_error(span) and StoredTrace.tags(span).get("error.type")
    assert "order-service" not in trace.services, "the killed process never exported its spans"
    record(
        "order-service killed",
        requests=len(outcomes),
        held_in_flight=HELD,
        answered_503=len(down),
        worst_503_after_kill_ms=round(
            max(o.started + o.elapsed - max(o.started, killed_at) for o in down) * 1000
        ),
        orders_201=len(ok),
        leaked_reservations=0,
        half_written_orders=0,
    )


def test_inventory_service_killed(stack: Stack, client: httpx.Client) -> None:
    stock = {LOAD_SKU: available(client, LOAD_SKU)}
    orders_before = stored_order_ids(stack)
    inventory = stack.process("inventory-service")
    with Load(stack.gateway_url, order_body(LOAD_SKU)) as load:
        wait_until(lambda: len(load.outcomes) >= 20, 20, "traffic flowing")
        killed_at = time.monotonic()  # before: kill() returns once it is reaped
        inventory.kill()
        wait_until(lambda: sum(o.started > killed_at for o in load.outcomes) >= 20, 20, "load")
        restarting_at = time.monotonic()
        inventory.start()
        inventory.wait_healthy(time.monotonic() + 30)
        back_at = time.monotonic()
        wait_until(lambda: sum(o.started > back_at for o in load.outcomes) >= 20, 20, "after")
    down = [o for o in load.outcomes if killed_at <= o.started < restarting_at]
    assert down and all(o.status == 503 for o in down), {o.status for o in down}
    assert all(o.body["service"] == "inventory-service" for o in down)
    assert max(o.elapsed for o in down) < PROMPT_SECONDS
    assert {o.status for o in load.outcomes if o.started > back_at} == {201}
    ok = [o for o in load.outcomes if o.status == 201]
    assert stored_order_ids(stack) - orders_before == {o.order_id for o in ok}
    consistent(stack, client, stock, ok)

    trace = wait_for_trace(stack.jaeger_url, down[-1].trace_id or "", {"api-gateway"})
    assert is_error(failed_client_span(trace, "/inventory/reserve"))
    assert trace.services == {"api-gateway"}, "no order was attempted"
    record(
        "inventory-service killed",
        requests=len(load.outcomes),
        answered_503=len(down),
        worst_503_ms=round(max(o.elapsed for o in down) * 1000),
        orders_201=len(ok),
    )


def test_notification_service_killed_never_fails_an_order(stack: Stack, client) -> None:
    notification = stack.process("notification-service")
    notification.kill()
    try:
        outcomes = [place(client) for _ in range(10)]
    finally:
        notification.start()
        notification.wait_healthy(time.monotonic() + 30)
    assert {o.status for o in outcomes} == {201}
    assert {o.body["notification"] for o in outcomes} == {"failed"}
    assert max(o.elapsed for o in outcomes) < PROMPT_SECONDS
    assert place(client).body["notification"] == "queued"


@pytest.mark.parametrize("service", ["order-service", "api-gateway"])
def test_sigterm_under_load_finishes_in_flight_and_flushes_spans(
    stack: Stack, client: httpx.Client, per_order, service: str
) -> None:
    proc = stack.process(service)
    # Export only on shutdown: with a 60 s batch delay, the spans this process makes can only
    # reach Jaeger through the flush that SIGTERM triggers.
    restart(proc, {"OTEL_BSP_SCHEDULE_DELAY": "60000"})
    stock = {sku: available(client, sku) for sku in (LOAD_SKU, HELD_SKU)}
    orders_before = stored_order_ids(stack)
    with ThreadPoolExecutor(HELD) as pool, Load(stack.gateway_url, order_body(LOAD_SKU)) as load:
        wait_until(lambda: len(load.outcomes) >= 20, 20, "traffic flowing")
        held = hold(pool, stack, 1500)
        term_at = time.monotonic()
        proc.stop()  # SIGTERM; returns once the process has exited
        stopped_in = time.monotonic() - term_at
        held_outcomes = [f.result(timeout=15) for f in held]
        restart(proc, {"OTEL_BSP_SCHEDULE_DELAY": str(SDK_DEFAULTS["OTEL_BSP_SCHEDULE_DELAY"])})
        back_at = time.monotonic()
        wait_until(lambda: sum(o.started > back_at for o in load.outcomes) >= 20, 20, "after")

    # In-flight requests finished normally; the process exited by itself (no SIGKILL needed).
    assert [o.status for o in held_outcomes] == [201] * HELD, [o.body for o in held_outcomes]
    assert stopped_in < 12, "graceful shutdown took too long"
    assert re.search(r"stopped: all \d+ spans exported", proc.log_file.read_text())
    outcomes = load.outcomes + held_outcomes
    # While it was down: the gateway answered 503 (order-service) or refused connections.
    refused = [o for o in outcomes if o.status not in (201,)]
    if service == "order-service":
        odd = [
            (o.status, o.body)
            for o in refused
            if o.status != 503 or o.body.get("service") != service
        ]
        assert not odd, odd[:3]
    else:
        assert all(o.status == 0 for o in refused), {o.status for o in refused}
    assert {o.status for o in outcomes if o.started > back_at} == {201}

    # Every order answered 201 is stored and readable after the restart; nothing else is.
    ok = [o for o in outcomes if o.status == 201]
    assert stored_order_ids(stack) - orders_before == {o.order_id for o in ok}
    for o in held_outcomes:
        fetched = client.get(f"/api/orders/{o.order_id}")
        assert fetched.status_code == 200 and fetched.json()["total"] == o.body["total"]
    consistent(stack, client, stock, ok)

    # The spans the stopped process held were flushed: every order's trace is complete.
    wait_for_traces(stack.jaeger_url, [o.trace_id for o in ok], per_order, timeout=30)
    record(
        f"SIGTERM {service}",
        requests=len(outcomes),
        held_in_flight=HELD,
        held_finished_201=sum(o.status == 201 for o in held_outcomes),
        stopped_in_s=round(stopped_in, 1),
        refused_while_down=len(refused),
        orders_201_all_stored_and_traced=len(ok),
    )


def restart(proc: ManagedProcess, env: dict[str, str]) -> None:
    proc.stop()
    proc.env.update(env)
    proc.start()
    proc.wait_healthy(time.monotonic() + 30)
