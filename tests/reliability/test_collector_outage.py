"""The collector killed for 30 s while orders flow at 20 a second: nothing is lost.

Each service exports through a ``BatchSpanProcessor`` whose exporter retries a refused batch for
``OTEL_BSP_EXPORT_TIMEOUT`` (60 s, servicekit/export.py) while spans finished meanwhile wait in
its queue (``OTEL_BSP_MAX_QUEUE_SIZE``, 8192 spans: 100 s of one service's spans at this rate).
So within the envelope (an outage of up to 30 s at up to 20 orders/s) every span reaches Jaeger,
requests never wait for telemetry, and memory stays bounded by the queue. Then the shutdown line
of a service stopped while the collector is down says how many spans it could not export.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from stackctl.stack import Stack
from tests.reliability.conftest import StackFactory, record
from tests.reliability.support import (
    SERVICES,
    Load,
    baseline_order,
    collector,
    jaeger,
    latency_summary,
    place,
    rss_mib,
    service_health,
    settle,
    span_count_by_service,
    wait_for_traces,
    wait_until,
    warm_up,
)

RATE = 20.0  # orders per second: the envelope's upper bound
OUTAGE_SECONDS = 30.0  # the envelope's longest outage
AFTER_SECONDS = 5.0  # traffic continues this long once the collector is healthy again


@pytest.fixture(scope="module")
def stack(stacks: StackFactory) -> Iterator[Stack]:
    with stacks.running("collector-outage") as stack:
        yield stack


def test_collector_down_30s_at_20_orders_per_second_loses_nothing(
    stack: Stack, client: httpx.Client
) -> None:
    per_order, warm = warm_up(stack, client)
    settle(stack)
    before = stack.spans_ended()
    pids = {name: stack.process(name).pid() for name in SERVICES}
    rss_before = {name: rss_mib(pid) for name, pid in pids.items()}

    otelcol = stack.process("otel-collector")
    with Load(stack.gateway_url, rate=RATE) as load:
        wait_until(lambda: len(load.outcomes) >= 20, 20, "traffic flowing")
        killed_at = time.monotonic()
        otelcol.kill()
        time.sleep(max(0.0, killed_at + OUTAGE_SECONDS - time.monotonic()))
        rss_peak = {name: rss_mib(pid) for name, pid in pids.items()}  # the queues are fullest
        assert otelcol.pid() is None, "the collector stayed down"
        otelcol.start()
        otelcol.wait_healthy(time.monotonic() + 30)
        back_at = time.monotonic()
        time.sleep(AFTER_SECONDS)
    outage = [o for o in load.outcomes if killed_at <= o.started < back_at]
    outcomes = load.outcomes

    # Every order succeeds at the usual speed: export never blocks a request.
    assert {o.status for o in outcomes} == {201}, Counter(o.status for o in outcomes)
    normal, during = latency_summary(warm), latency_summary(outage)
    assert (
        statistics.median(o.elapsed for o in outage)
        <= 2 * statistics.median(o.elapsed for o in warm) + 0.02
    ), (normal, during)
    assert {name: stack.process(name).pid() for name in SERVICES} == pids, "no service restarted"

    # Every span each service finished was exported, none given up; the collector passed all
    # of them on, and Jaeger stored all of them.
    made = Counter({k: v - before[k] for k, v in stack.spans_ended().items()})
    assert made == Counter({k: v * len(outcomes) for k, v in per_order.items()}), "spans per order"

    def exported() -> dict | None:
        health = service_health(stack)
        done = all(h["spans_exported"] == h["spans_ended"] for h in health.values())
        return health if done else None

    health = wait_until(exported, 60, "every service exported every span it finished")
    recovered_in = time.monotonic() - back_at
    assert {name: h["spans_dropped"] for name, h in health.items()} == dict.fromkeys(SERVICES, 0)
    # Since its restart: it may also send what its predecessor acknowledged and left in the
    # queue on disk, so sent >= accepted.
    counts = wait_until(
        lambda: (c := collector(stack))["sent"] >= c["accepted"] and c["queue_size"] == 0 and c,
        30,
        "the restarted collector drained to Jaeger",
    )
    assert counts["refused"] == counts["send_failed"] == counts["enqueue_failed"] == 0
    assert jaeger(stack)["store_failed"] == 0

    # And every trace is complete in Jaeger, no orphan (Jaeger stores within a second or so of
    # the collector sending; the wait covers a slow machine).
    traces = wait_for_traces(
        stack.jaeger_url, [o.trace_id or "" for o in outcomes], per_order, timeout=60
    )
    stored = sum((span_count_by_service(t) for t in traces.values()), Counter())
    assert stored == made, {"lost": dict(made - stored)}

    for service in SERVICES:
        log = stack.process(service).log_file.read_text()
        assert "Queue full" not in log and "dropped" not in log, service

    duration = outcomes[-1].started - outcomes[0].started
    record(
        "collector down",
        outage_s=OUTAGE_SECONDS,
        orders=len(outcomes),
        orders_during_outage=len(outage),
        orders_per_s=round(len(outcomes) / duration, 1),
        latency_before=normal,
        latency_during=during,
        spans_made=sum(made.values()),
        spans_stored=sum(stored.values()),
        spans_lost=sum((made - stored).values()),
        spans_per_order=sum(per_order.values()),
        exported_all_in_s_after_back=round(recovered_in, 1),
        rss_mib_before=rss_before,
        rss_mib_end_of_outage=rss_peak,
    )


def test_shutdown_with_the_collector_down_says_what_was_not_exported(stack: Stack) -> None:
    """Not 'spans flushed' when they were not: the line names how many never left."""
    client = httpx.Client(base_url=stack.gateway_url, timeout=15)
    otelcol = stack.process("otel-collector")
    notification = stack.process("notification-service")
    otelcol.kill()
    try:
        assert {place(client).status for _ in range(5)} == {201}
        ended = stack.spans_ended()["notification-service"]
        stop_at = time.monotonic()
        assert notification.stop(), "notification-service was running"
        stopped_in = time.monotonic() - stop_at
    finally:
        otelcol.start()
        otelcol.wait_healthy(time.monotonic() + 30)
        notification.start()
        notification.wait_healthy(time.monotonic() + 30)
    lines = [json.loads(line) for line in notification.log_file.read_text().splitlines()]
    [*_, last_stop] = [r for r in lines if r.get("message", "").startswith("stopped")]
    match = re.search(r"stopped: (\d+) of (\d+) spans NOT exported", last_stop["message"])
    assert match and last_stop["level"] == "ERROR", last_stop
    assert int(match[1]) > 0 and int(match[2]) == ended, (last_stop, ended)
    assert stopped_in < 15, f"the flush is bounded, stop took {stopped_in:.1f} s"
    record(
        "shutdown with the collector down",
        line=last_stop["message"],
        stopped_in_s=round(stopped_in, 1),
    )


def test_spans_the_collector_acknowledged_survive_its_sigkill(stack: Stack) -> None:
    """The SDK forgets a batch once the collector acknowledged it, so the collector must not
    lose it either: with Jaeger down, acknowledged spans wait in the collector's sending queue,
    which is on disk (file_storage); SIGKILL the collector, and they still reach Jaeger."""
    client = httpx.Client(base_url=stack.gateway_url, timeout=15)
    jaeger_proc, otelcol = stack.process("jaeger"), stack.process("otel-collector")
    per_order = baseline_order(stack, client)
    jaeger_proc.kill()
    try:
        orders = [place(client) for _ in range(20)]
        assert {o.status for o in orders} == {201}
        wait_until(
            lambda: all(
                h["spans_exported"] == h["spans_ended"] for h in service_health(stack).values()
            ),
            30,
            "the collector acknowledged every span",
        )
        held = wait_until(
            lambda: collector(stack)["queue_size"], 10, "spans queued in the collector"
        )
        otelcol.kill()
        otelcol.start()
        otelcol.wait_healthy(time.monotonic() + 30)
    finally:
        jaeger_proc.start()
        jaeger_proc.wait_healthy(time.monotonic() + 30)
    wait_for_traces(stack.jaeger_url, [o.trace_id or "" for o in orders], per_order, timeout=90)
    record(
        "collector SIGKILLed holding acknowledged spans", orders=len(orders), queued_batches=held
    )
