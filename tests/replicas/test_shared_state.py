"""Replicas share one store: what one replica did, every other sees and honours.

Two processes of each service on one PostgreSQL, behind HAProxy: concurrent orders for a scarce
sku never oversell, through the balancer or straight at the inventory replicas; one
``Idempotency-Key`` sent to two gateway replicas at once makes one order; a release owed by a
gateway replica that dies is carried out by another; an order is readable from every gateway
replica; and each replica is an instance of its own in the traces.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from servicekit.catalog import SERVICE_NAMES
from stackctl.orders import order_body
from stackctl.stack import Stack
from stackctl.traces import StoredTrace, wait_for_trace
from tests.replicas.conftest import (
    ADMIN_TOKEN,
    COMPENSATION_RETRY_SECONDS,
    REPLICAS,
    available,
    query,
    set_stock,
    stored_orders,
    wait_until,
)
from trace_analysis.sources.span_logs import trace_logs

CONCURRENT = 60


def post_all(requests: list[tuple[str, dict[str, Any], dict[str, str]]]) -> list[httpx.Response]:
    """Every ``(url, json, headers)`` POSTed at once, one thread each."""
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda r: client.post(r[0], json=r[1], headers=r[2]), requests))


def test_orders_through_the_balancer_never_oversell(stack: Stack) -> None:
    sku, stock = "LIMITED-EDITION", 7
    set_stock(stack, sku, stock)
    url = f"{stack.gateway_url}/api/orders"
    responses = post_all([(url, order_body(sku), {})] * CONCURRENT)
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 400}, statuses
    confirmed = [r.json()["orderId"] for r in responses if r.status_code == 201]
    assert len(confirmed) == stock, statuses
    assert len(confirmed) + available(stack, sku) == stock
    stored = stored_orders(stack)
    assert all(stored[order_id]["status"] == "confirmed" for order_id in confirmed)


def test_reservations_straight_at_the_inventory_replicas_never_oversell(stack: Stack) -> None:
    sku, stock, quantity = "SKU789", 9, 2
    set_stock(stack, sku, stock)
    replicas = stack.replica_urls("inventory-service")
    assert len(replicas) == REPLICAS
    requests = [
        (
            f"{replicas[i % REPLICAS]}/inventory/reserve",
            {"reservationId": uuid.uuid4().hex, "items": [{"sku": sku, "quantity": quantity}]},
            {},
        )
        for i in range(CONCURRENT)
    ]
    responses = post_all(requests)
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 400}, statuses
    reserved = sum(r.status_code == 201 for r in responses) * quantity
    assert reserved == stock - stock % quantity, statuses  # 4 of 2 units; 1 unit is left
    assert reserved + available(stack, sku) == stock
    per_replica = Counter(r.url.port for r in responses if r.status_code == 201)
    assert sum(per_replica.values()) == reserved // quantity


def follow(client: httpx.Client, url: str, body: dict[str, Any], key: str) -> list[httpx.Response]:
    """POST with ``key`` until the answer is not 409, waiting its ``Retry-After`` (bounded)."""
    answers = []
    deadline = time.monotonic() + 120
    while True:
        response = client.post(url, json=body, headers={"Idempotency-Key": key})
        answers.append(response)
        if response.status_code != 409 or time.monotonic() > deadline:
            return answers
        time.sleep(float(response.headers["Retry-After"]))


def test_one_idempotency_key_at_two_gateway_replicas_makes_one_order(stack: Stack) -> None:
    sku, user = "SKU456", int(uuid.uuid4().int % 1_000_000_000)
    before = available(stack, sku)
    body, key = order_body(sku, quantity=3, user_id=user), uuid.uuid4().hex
    urls = [f"{url}/api/orders" for url in stack.replica_urls("api-gateway")]
    # Slow inventory-service for this request, so both copies meet while the saga runs.
    headers = {
        "Authorization": f"Bearer {ADMIN_TOKEN}",  # the admin's fault baggage acts
        "baggage": "fault.inventory-service=latency:1500",
    }
    with httpx.Client(timeout=120, headers=headers) as client, ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda url: follow(client, url, body, key), urls))
    finals = [answers[-1] for answers in both]
    assert [r.status_code for r in finals] == [201, 201], [[a.status_code for a in b] for b in both]
    assert finals[0].json() == finals[1].json(), "the same 201 body, replayed"
    refused = [a for answers in both for a in answers[:-1]]
    assert refused and all(r.status_code == 409 for r in refused), "the copies met"
    rows = query(stack, "SELECT order_id FROM order_service.orders WHERE user_id = %s", (user,))
    assert [row["order_id"] for row in rows] == [finals[0].json()["orderId"]]
    assert available(stack, sku) == before - 3


def test_a_release_owed_by_a_dead_replica_is_made_by_another(restored: Stack) -> None:
    stack, sku = restored, "SKU456"
    before = available(stack, sku)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    # Releases fail on every inventory replica, and this order's store fails: the reservation
    # is owed back, kept in the gateways' shared backlog.
    release_fault = {"kind": "error", "value": "503", "path_prefix": "/inventory/release"}
    for url in stack.replica_urls("inventory-service"):
        httpx.post(f"{url}/admin/faults", json=release_fault, headers=admin).raise_for_status()
    owing = stack.replica_processes["api-gateway"][0]
    headers = {**admin, "baggage": "fault.order-service=error:503"}
    url = f"{stack.replica_urls('api-gateway')[0]}/api/orders"
    failed = httpx.post(url, json=order_body(sku, quantity=2), headers=headers, timeout=60)
    assert failed.status_code >= 500, failed.text
    owed = query(stack, "SELECT reservation_id FROM api_gateway.pending_releases")
    assert owed, "the release is owed"
    assert available(stack, sku) == before - 2
    owing.kill()
    for url in stack.replica_urls("inventory-service"):
        httpx.delete(f"{url}/admin/faults", headers=admin).raise_for_status()
    wait_until(
        lambda: available(stack, sku) == before,
        timeout=30 * COMPENSATION_RETRY_SECONDS + 30,
        what="the stock released by the surviving gateway replica",
    )
    assert not query(stack, "SELECT reservation_id FROM api_gateway.pending_releases")


def test_the_trace_browser_finds_each_replicas_log_lines(stack: Stack) -> None:
    """The browser reads every ``run/logs/*.log`` (``TRACE_BROWSER_LOG_DIR``): a trace's
    lines come from the replicas that served it, ``<service>-<k>.log``, one of each service."""
    placed = httpx.post(f"{stack.gateway_url}/api/orders", json=order_body(), timeout=60)
    assert placed.status_code == 201, placed.text
    trace_id = placed.json()["traceId"]
    replicas = {proc.name for procs in stack.replica_processes.values() for proc in procs}

    def files() -> set[str]:
        logs = trace_logs(stack.run_dir / "logs", trace_id, max_bytes=32 << 20)
        return {line.file for lines in logs.by_span.values() for line in lines} & replicas

    served = wait_until(lambda: len(files()) == len(SERVICE_NAMES) and files(), 30, "log lines")
    assert {name.rsplit("-", 1)[0] for name in served} == set(SERVICE_NAMES), served


def test_an_order_is_readable_from_every_gateway_replica(stack: Stack) -> None:
    placed = httpx.post(f"{stack.gateway_url}/api/orders", json=order_body(), timeout=60)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["orderId"]
    bodies = [
        httpx.get(f"{url}/api/orders/{order_id}", timeout=10)
        for url in stack.replica_urls("api-gateway")
    ]
    assert [r.status_code for r in bodies] == [200] * REPLICAS
    assert all(r.json() == bodies[0].json() for r in bodies)
    assert bodies[0].json()["orderId"] == order_id


def server_instances(trace: StoredTrace) -> dict[str, str]:
    """Per service: the ``service.instance.id`` of the process whose server span is in
    ``trace``."""
    found = {}
    for span in trace.spans:
        if StoredTrace.tags(span).get("span.kind") == "server":
            process = StoredTrace.tags(trace.raw["processes"][span["processID"]])
            found[trace.service_of(span)] = process["service.instance.id"]
    return found


def test_each_replica_is_an_instance_of_its_own(stack: Stack) -> None:
    """``service.instance.id`` (a process tag in Jaeger) tells the replicas apart: the replica
    whose log has a trace's request is always the same instance in Jaeger, and no two replicas
    share an id."""
    traces = []
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        for _ in range(4 * REPLICAS):
            response = client.post("/api/orders", json=order_body())
            assert response.status_code == 201, response.text
            traces.append(
                wait_for_trace(
                    stack.jaeger_url,
                    response.json()["traceId"],
                    set(stack.replica_processes),
                    frozenset({"process_order", "send_notification"}),
                    timeout=30,
                )
            )
    for service, replicas in stack.replica_processes.items():
        logs = [proc.log_file.read_text() for proc in replicas]
        pairs = set()
        for trace in traces:
            trace_id = trace.raw["traceID"]
            [replica] = [
                proc.name for proc, log in zip(replicas, logs, strict=True) if trace_id in log
            ]
            pairs.add((replica, server_instances(trace)[service]))
        assert len(pairs) == REPLICAS, (service, pairs)  # one id per replica, each one used
        assert len({instance for _, instance in pairs}) == REPLICAS, (service, pairs)
