"""A hostile OTLP client against the real collector: the series it can make are capped, what it
sends too large is refused where it enters, concurrent maximum requests stay inside the memory
limit, a span Jaeger would refuse is cut down rather than lost, and the services' orders arrive
whole in Jaeger through a flood of all of these at once.

The bounds under test are otel-collector/config.yaml's defaults (read from it, not copied); the
static checks of every shipped config are in ``tests/unit/test_collector_limits_static.py``.
Measured figures are recorded for docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest

from servicekit.catalog import SECRET_VARIABLES, SERVICE_NAMES
from stackctl.stack import Stack
from stackctl.traces import fetch_trace
from tests.reliability.conftest import ADMIN_TOKEN, StackFactory, record
from tests.reliability.hostile_otlp import (
    CARDINALITY_LIMIT,
    GROUPS,
    GRPC_LIMIT,
    HTTP_BODY_LIMIT,
    MEMORY_LIMIT_MIB,
    MIB,
    PeakRss,
    calls_series,
    grpc_export,
    has_overflow,
    json_request,
    json_span,
    of_service,
    padded_body,
    post_json,
    proto_request,
)
from tests.reliability.support import Load, baseline_order, jaeger, wait_for_traces, wait_until

FLUSH = "1s"  # span metrics flushed every second, so a test sees its series at once


@pytest.fixture(scope="module")
def stack(stacks: StackFactory) -> Iterator[Stack]:
    env = {"ADMIN_TOKEN": ADMIN_TOKEN, "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": FLUSH}
    with stacks.running("collector-bounds", env) as stack:
        yield stack


def otlp_http(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.ports.otlp_http}"


def otlp_grpc(stack: Stack) -> str:
    return f"127.0.0.1:{stack.ports.otlp_grpc}"


def collector_pid(stack: Stack) -> int:
    pid = stack.process("otel-collector").pid()
    assert pid is not None
    return pid


def ordinary_span_accepted(stack: Stack) -> bool:
    """What the stack's own services need after any abuse: an ordinary span is taken."""
    body = json_request([("api-gateway", [json_span("GET /api/inventory/{sku}")])])
    return post_json(otlp_http(stack), body)[0] == 200


def send_in_requests(stack: Stack, by_service: list[tuple[str, list[dict]]], per: int = 500):
    for first in range(0, len(by_service), per):
        status, text = post_json(otlp_http(stack), json_request(by_service[first : first + per]))
        assert status == 200, text[:300]


def series_settled(stack: Stack, check: Callable[[list[dict[str, str]]], bool]):
    """The calls series once ``check`` holds, read again a few flushes later."""
    wait_until(
        lambda: (s := calls_series(stack.spanmetrics_url)) and check(s),
        30,
        "span metrics flushed",
        interval=0.5,
    )
    time.sleep(3)
    return calls_series(stack.spanmetrics_url)


USED_GROUPS: set[str] = set()


def service_in_a_fresh_group(prefix: str) -> str:
    """A service name whose span-metrics group (the first hex digit of the SHA-1 of the name,
    as the collector's transform/span_metrics_key) no earlier test of this module filled."""
    while True:
        name = f"{prefix}-{secrets.token_hex(3)}"
        group = hashlib.sha1(name.encode()).hexdigest()[0]
        if group not in USED_GROUPS | {group_of(s) for s in SERVICE_NAMES}:
            USED_GROUPS.add(group)
            return name


def group_of(service: str) -> str:
    return hashlib.sha1(service.encode()).hexdigest()[0]


# --- span-metric series --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dimension", "make"),
    [
        ("span name", lambda i: json_span(f"GET /api/orders/{secrets.token_hex(16)}")),
        (
            "http.request.method",
            lambda i: json_span("HTTP", {"http.request.method": f"M{secrets.token_hex(6)}"}),
        ),
        (
            "http.response.status_code",
            lambda i: json_span("GET /", {"http.response.status_code": str(100_000 + i)}),
        ),
    ],
)
def test_one_services_new_series_past_the_cap_fold_into_overflow(
    stack: Stack, dimension: str, make: Callable[[int], dict]
) -> None:
    service = service_in_a_fresh_group(f"hostile-{dimension.replace(' ', '-').replace('.', '-')}")
    sent = 3 * CARDINALITY_LIMIT
    send_in_requests(stack, [(service, [make(i) for i in range(sent)])], per=1)
    series = series_settled(stack, lambda s: bool(of_service(s, service)))
    mine = of_service(series, service)
    # The group's cap, less the series the services may already hold in it, and the overflow.
    assert CARDINALITY_LIMIT // 2 < len(mine) <= CARDINALITY_LIMIT, len(mine)
    assert has_overflow(series)
    assert ordinary_span_accepted(stack)
    record(f"span metrics: {sent} values of {dimension}", series_of_the_service=len(mine))


def test_many_service_names_stay_within_the_groups_caps(stack: Stack) -> None:
    services = 20_000
    pid = collector_pid(stack)
    with PeakRss(pid) as rss:
        send_in_requests(
            stack,
            [
                (f"hostile-svc-{i}-{secrets.token_hex(4)}", [json_span("op")])
                for i in range(services)
            ],
        )
        series = series_settled(stack, lambda s: len(s) > GROUPS * CARDINALITY_LIMIT // 2)
    bound = GROUPS * (CARDINALITY_LIMIT + 1)
    assert len(series) <= bound, len(series)
    assert ordinary_span_accepted(stack)
    assert rss.growth_mib < MEMORY_LIMIT_MIB
    record(
        f"span metrics: {services} service names",
        calls_series=len(series),
        bound=bound,
        rss_before_mib=round(rss.before_mib, 1),
        rss_peak_mib=round(rss.peak_mib, 1),
    )


# --- receive limits: what a client sees ----------------------------------------------------


def test_http_bodies_over_the_limit_are_refused_before_decoding(stack: Stack) -> None:
    url = otlp_http(stack)
    assert post_json(url, padded_body(HTTP_BODY_LIMIT - 1024))[0] == 200
    status, text = post_json(url, padded_body(HTTP_BODY_LIMIT + 1))
    assert status == 400 and "too large" in text, (status, text[:200])
    # Counted after decompression: a small gzip body that inflates past the limit is refused.
    status, text = post_json(url, padded_body(HTTP_BODY_LIMIT * 4), gzipped=True)
    assert status == 400 and "too large" in text, (status, text[:200])


def test_grpc_messages_over_the_limit_get_resource_exhausted(stack: Stack) -> None:
    target = otlp_grpc(stack)
    assert grpc_export(target, proto_request(GRPC_LIMIT - 4096)) == grpc.StatusCode.OK
    over = grpc_export(target, proto_request(GRPC_LIMIT + 4096))
    assert over == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_span_jaeger_would_refuse_is_cut_down_where_it_enters(stack: Stack) -> None:
    """Badger refuses index keys over 65,000 bytes: an attribute of 100 kB, a name of 5 kB and a
    key of 2 kB would make Jaeger drop the span after the collector acknowledged it."""
    long_key = "k" * 2000
    span = json_span("n" * 5000, {"payload": "é" * 50_000, long_key: "v", "kept": "yes"})
    body = json_request([("hostile-oversized-span", [span])])
    failed_before = jaeger(stack)["store_failed"]
    assert post_json(otlp_http(stack), body)[0] == 200
    stored = wait_until(
        lambda: fetch_trace(stack.jaeger_url, span["traceId"]), 30, "the cut span in Jaeger"
    )
    (got,) = stored.spans
    tags = {tag["key"]: tag["value"] for tag in got["tags"]}
    assert tags["payload"].endswith("[truncated]") and len(tags["payload"].encode()) <= 4096
    assert got["operationName"].endswith("[truncated]") and len(got["operationName"]) < 1100
    assert long_key not in tags and tags["kept"] == "yes"
    assert jaeger(stack)["store_failed"] == failed_before


# --- memory under concurrent maximum requests --------------------------------------------


def http_burst(size: int, concurrent: int) -> Callable[[Stack], list]:
    def send(stack: Stack) -> list:
        body = padded_body(size)
        with ThreadPoolExecutor(concurrent) as pool:
            return list(pool.map(lambda _: post_json(otlp_http(stack), body)[0], range(concurrent)))

    return send


def grpc_burst(size: int, concurrent: int) -> Callable[[Stack], list]:
    def send(stack: Stack) -> list:
        request = proto_request(size)
        with ThreadPoolExecutor(concurrent) as pool:
            codes = pool.map(lambda _: grpc_export(otlp_grpc(stack), request), range(concurrent))
            return [code.name for code in codes]

    return send


BURSTS = {
    "8 x 19 MiB over HTTP (over the limit)": http_burst(19 * MIB, 8),
    "128 x the HTTP limit": http_burst(HTTP_BODY_LIMIT - 4096, 128),
    "16 x the gRPC limit": grpc_burst(GRPC_LIMIT - 4096, 16),
    "64 x the gRPC limit": grpc_burst(GRPC_LIMIT - 4096, 64),
    "8 x 16 MiB over gRPC (over the limit)": grpc_burst(16 * MIB, 8),
}


@pytest.mark.parametrize("burst", list(BURSTS))
def test_concurrent_maximum_requests_stay_inside_the_memory_limit(stack: Stack, burst: str) -> None:
    with PeakRss(collector_pid(stack)) as rss:
        answers = BURSTS[burst](stack)
    assert rss.growth_mib < MEMORY_LIMIT_MIB, (rss.before_mib, rss.peak_mib)
    assert wait_until(lambda: ordinary_span_accepted(stack), 30, "the collector taking spans")
    record(
        f"collector memory: {burst}",
        answers=dict(Counter(str(a) for a in answers)),
        rss_before_mib=round(rss.before_mib, 1),
        rss_peak_mib=round(rss.peak_mib, 1),
        growth_mib=rss.growth_mib,
        limit_mib=MEMORY_LIMIT_MIB,
    )


# --- secrets -----------------------------------------------------------------------------


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)


def test_only_the_services_processes_hold_the_admin_token(stack: Stack) -> None:
    seen = {}
    for process in stack.processes:
        pid = process.pid()
        assert pid is not None, process.name
        held = {var for var in SECRET_VARIABLES if var in environ(pid)}
        seen[process.name] = held
        given = {var for var in SECRET_VARIABLES if var in {**os.environ, **stack.env}}
        expected = given if process.name in SERVICE_NAMES else set()
        assert held == expected, process.name
    assert {"jaeger", "otel-collector"} <= set(seen)


# --- the stack's own spans through a flood (last: it leaves the collector busiest) --------


FLOOD_SECONDS = 20.0
ORDER_RATE = 4.0


class Flood:
    """Threads that each send one kind of abuse back to back until stopped, counting answers."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.answers: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        url, target = otlp_http(stack), otlp_grpc(stack)
        large, over = padded_body(HTTP_BODY_LIMIT - 4096), padded_body(19 * MIB)
        grpc_large = proto_request(GRPC_LIMIT - 4096)

        def series() -> str:
            spans = [json_span(f"GET /x/{secrets.token_hex(8)}") for _ in range(200)]
            return str(post_json(url, json_request([(f"flood-{secrets.token_hex(4)}", spans)]))[0])

        kinds: dict[str, Callable[[], str]] = {
            "series": series,
            "large": lambda: str(post_json(url, large)[0]),
            "over": lambda: str(post_json(url, over)[0]),
            "rate": lambda: str(
                post_json(url, json_request([("flood-rate", [json_span("x")])]))[0]
            ),
            "grpc": lambda: grpc_export(target, grpc_large).name,
        }
        threads = {"series": 2, "large": 3, "over": 1, "rate": 2, "grpc": 2}
        self._threads = [
            threading.Thread(target=self._run, args=(kind, kinds[kind]), daemon=True)
            for kind, n in threads.items()
            for _ in range(n)
        ]

    def _run(self, kind: str, send: Callable[[], str]) -> None:
        while not self._stop.is_set():
            answer = send()
            with self._lock:
                self.answers[f"{kind} {answer}"] += 1

    def __enter__(self) -> Flood:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)


def test_orders_arrive_whole_in_jaeger_through_a_flood(stack: Stack) -> None:
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
        per_order = baseline_order(stack, client)
    with (
        PeakRss(collector_pid(stack)) as rss,
        Flood(stack) as flood,
        Load(stack.gateway_url, rate=ORDER_RATE) as load,
    ):
        time.sleep(FLOOD_SECONDS)
    outcomes = load.outcomes
    assert outcomes and {o.status for o in outcomes} == {201}, Counter(o.status for o in outcomes)
    trace_ids = [o.trace_id for o in outcomes if o.trace_id]
    assert len(trace_ids) == len(outcomes)
    # Every span of every order, as the quiet baseline order had them, none missing or orphaned
    # (the services' exporters retry what the memory limiter refused during the flood).
    wait_for_traces(stack.jaeger_url, trace_ids, per_order, timeout=120)
    series = calls_series(stack.spanmetrics_url)
    assert len(series) <= GROUPS * (CARDINALITY_LIMIT + 1)
    record(
        "flood: orders through a hostile OTLP client",
        seconds=FLOOD_SECONDS,
        orders=len(outcomes),
        orders_whole_in_jaeger=len(trace_ids),
        flood_answers=dict(flood.answers),
        calls_series=len(series),
        rss_before_mib=round(rss.before_mib, 1),
        rss_peak_mib=round(rss.peak_mib, 1),
        limit_mib=MEMORY_LIMIT_MIB,
    )
