"""Jaeger killed for 30 s while orders flow: the collector holds the spans in its sending queue
and retries; once Jaeger is back every trace of the outage is stored complete, every trace from
before it is still there (Badger on disk), and no span is lost anywhere on the way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from stackctl.stack import Stack
from tests.reliability.conftest import StackFactory, record
from tests.reliability.support import (
    Load,
    collector,
    settle,
    wait_for_traces,
    wait_until,
    warm_up,
)

OUTAGE_SECONDS = 30
ORDER_PAUSE_SECONDS = 0.1  # about 10 orders a second during the outage


@pytest.fixture(scope="module")
def stack(stacks: StackFactory) -> Iterator[Stack]:
    with stacks.running("jaeger-outage") as stack:
        yield stack


def test_jaeger_down_loses_no_span(stack: Stack, client: httpx.Client) -> None:
    per_order, earlier = warm_up(stack, client)
    wait_for_traces(stack.jaeger_url, [o.trace_id for o in earlier], per_order, timeout=30)
    sent_before = settle(stack)["sent"]

    jaeger = stack.process("jaeger")
    killed_at = time.monotonic()  # before: kill() returns once it is reaped
    jaeger.kill()
    with Load(stack.gateway_url, pause=ORDER_PAUSE_SECONDS) as load:
        time.sleep(OUTAGE_SECONDS)  # the outage itself: orders keep flowing meanwhile
        during = collector(stack)
    outage = load.outcomes
    assert outage and {o.status for o in outage} == {201}, {o.status for o in outage}
    # Jaeger really was unreachable: nothing was sent, the spans waited in the queue.
    assert during["sent"] == sent_before
    assert during["queue_size"] > 0
    assert during["accepted"] > sent_before

    jaeger.start()
    jaeger.wait_healthy(time.monotonic() + 60)
    back_at = time.monotonic()
    outage_s = back_at - killed_at

    # The collector's retries find Jaeger again; its gRPC reconnect backoff after a 30 s outage
    # can take another ~30 s, so the deadline is generous.
    drained = wait_until(
        lambda: (c := collector(stack))["queue_size"] == 0 and c["sent"] == c["accepted"] and c,
        90,
        "the collector's queue drained into Jaeger",
        interval=0.2,
    )
    drained_in = time.monotonic() - back_at
    ended = sum(stack.spans_ended().values())
    assert drained["accepted"] == drained["sent"] == ended, "every span made was sent on"
    for key in ("refused", "failed", "send_failed", "enqueue_failed", "memory_refused"):
        assert drained[key] == 0, key

    # Every trace from before and during the outage is queryable and complete.
    traces = [o.trace_id for o in earlier + outage]
    wait_for_traces(stack.jaeger_url, traces, per_order, timeout=30)

    record(
        "jaeger down",
        outage_s=round(outage_s, 1),
        orders_before=len(earlier),
        orders_during=len(outage),
        spans_made=ended,
        spans_queued_peak_batches=during["queue_size"],
        spans_sent=drained["sent"],
        spans_lost=ended - drained["sent"],
        traces_checked_complete=len(traces),
        drained_after_jaeger_back_s=round(drained_in, 1),
    )
