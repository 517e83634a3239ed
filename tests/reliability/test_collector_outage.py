"""The collector killed while orders flow: requests never wait for telemetry; the services
reconnect on their own once it is back; what is lost is exactly what the SDK says it dropped.

Each service exports through a ``BatchSpanProcessor``: a bounded in-memory queue (2048 spans)
drained by a background thread in batches of up to 512. With the collector gone, the exporter
retries a batch with backoff (1, 2, 4 s) within its 10 s timeout (``OTEL_EXPORTER_OTLP_TIMEOUT``)
and then drops it; spans finished meanwhile wait in the queue (dropped only beyond 2048) and go
out once the collector answers again. So an outage longer than about 7 s costs each service at
most the one batch it was retrying, and an outage under 14 s no more than that.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from stackctl.stack import Stack
from stackctl.traces import fetch_trace
from tests.reliability.conftest import StackFactory, record
from tests.reliability.support import (
    SERVICES,
    baseline_order,
    collector,
    latency_summary,
    place,
    settle,
    span_count_by_service,
    wait_for_traces,
    wait_until,
)

ORDERS_DURING_OUTAGE = 100
OUTAGE_SECONDS = 10  # past the SDK's ~7 s of retries for the batch in flight, under 14 s
BATCH_SIZE = 512  # OTEL_BSP_MAX_EXPORT_BATCH_SIZE default


@pytest.fixture(scope="module")
def stack(stacks: StackFactory) -> Iterator[Stack]:
    stack = stacks.start("collector-outage")
    yield stack
    stacks.stop(stack)


def test_collector_down_orders_succeed_and_services_recover(stack: Stack) -> None:
    client = httpx.Client(base_url=stack.gateway_url, timeout=15)
    per_order = baseline_order(stack, client)
    warm = [place(client) for _ in range(20)]
    assert {o.status for o in warm} == {201}
    settle(stack)
    before = stack.spans_ended()
    pids = {name: stack.process(name).pid() for name in SERVICES}

    otelcol = stack.process("otel-collector")
    killed_at = time.monotonic()  # before: kill() returns once it is reaped
    otelcol.kill()
    outage = [place(client) for _ in range(ORDERS_DURING_OUTAGE)]

    # Every order succeeds at the usual speed: export never blocks a request.
    assert [o.status for o in outage] == [201] * ORDERS_DURING_OUTAGE, outage[0].body
    normal, during = latency_summary(warm), latency_summary(outage)
    assert (
        statistics.median(o.elapsed for o in outage)
        <= 2 * statistics.median(o.elapsed for o in warm) + 0.02
    ), (normal, during)
    assert max(o.elapsed for o in outage) < 1.0, during  # the SDK's first retry waits 1 s
    assert otelcol.pid() is None, "the collector stayed down during the orders"

    # Keep it down past the SDK's retries for the batch it was exporting, then bring it back.
    time.sleep(max(0.0, killed_at + OUTAGE_SECONDS - time.monotonic()))
    otelcol.start()
    otelcol.wait_healthy(time.monotonic() + 30)
    back_at = time.monotonic()

    # The services were not restarted, and their new traces arrive complete.
    after = [place(client) for _ in range(10)]
    assert {o.status for o in after} == {201}
    wait_for_traces(stack.jaeger_url, [o.trace_id for o in after], per_order, timeout=40)
    recovered_in = time.monotonic() - back_at
    assert {name: stack.process(name).pid() for name in SERVICES} == pids

    # Each service's exporter works oldest first, so with the new traces in, every span from
    # the outage was either delivered or dropped. Account for each one.
    counts = wait_until(
        lambda: (c := collector(stack))["accepted"] == c["sent"] and c["queue_size"] == 0 and c,
        30,
        "the restarted collector drained to Jaeger",
    )
    made = Counter({k: v - before[k] for k, v in stack.spans_ended().items()})
    orders = ORDERS_DURING_OUTAGE + len(after)
    assert made == Counter({k: v * orders for k, v in per_order.items()}), "spans made per order"
    stored: Counter[str] = Counter()
    per_trace = []
    for outcome in outage:
        found = span_count_by_service(fetch_trace(stack.jaeger_url, outcome.trace_id or ""))
        stored += found
        per_trace.append(sum(found.values()))
    stored += Counter({k: v * len(after) for k, v in per_order.items()})
    lost = made - stored
    # Every span that reached the collector is in Jaeger: nothing lost past the SDK.
    assert counts["accepted"] == sum(stored.values())
    assert counts["refused"] == counts["send_failed"] == counts["enqueue_failed"] == 0
    # What the SDK lost: at most the one batch each service was retrying, and it says so.
    for service in SERVICES:
        log = stack.process(service).log_file.read_text()
        assert lost[service] <= BATCH_SIZE, (service, lost[service])
        if lost[service]:
            assert "Failed to export traces" in log, f"{service} lost spans without a word"
    assert per_trace[-1] == sum(per_order.values()), "the newest outage traces were delivered"

    record(
        "collector down",
        orders_during_outage=ORDERS_DURING_OUTAGE,
        outage_s=OUTAGE_SECONDS,
        latency_before=normal,
        latency_during=during,
        spans_made=sum(made.values()),
        spans_lost=sum(lost.values()),
        lost_by_service=dict(lost),
        complete_outage_traces=sum(n == sum(per_order.values()) for n in per_trace),
        partial_outage_traces=sum(0 < n < sum(per_order.values()) for n in per_trace),
        missing_outage_traces=per_trace.count(0),
        incomplete_among_first_orders=max(
            (i + 1 for i, n in enumerate(per_trace) if n < sum(per_order.values())), default=0
        ),
        spans_per_order=sum(per_order.values()),
        recovered_in_s=round(recovered_in, 1),
    )
