"""What a client can do to the telemetry at the public edge, against the real stack.

- Oversized request heads: a 70 kB User-Agent or a 65 kB path used to get its normal answer
  while Jaeger's Badger storage refused the gateway's server span whole (an index key holds the
  tag value; Badger's limit is 65,000 bytes), leaving a trace without its root, and the collector
  counted it as sent. Now the head is refused with 431 / 414 problem+json, every attribute value
  is cut to ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``, and a span the storage refuses anyway shows in
  Jaeger's own ``otelcol_exporter_send_failed_spans`` (what the delivery checks read).
- A caller's ``sampled=00``: the gateway used to record nothing yet return the trace id. Now
  the gateway decides for itself, keeping the caller's trace id, and the id is in Jaeger.
"""

from __future__ import annotations

import secrets
import time

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from servicekit.settings import ServiceSettings
from servicekit.telemetry import SDK_DEFAULTS
from stackctl.metrics import JAEGER_SPAN_COUNTERS, span_counts
from stackctl.orders import order_body
from stackctl.stack import Stack
from stackctl.traces import StoredTrace, fetch_trace

PROBLEM_JSON = "application/problem+json"
ATTRIBUTE_LIMIT = SDK_DEFAULTS["OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"]
LIMITS = ServiceSettings()
BADGER_KEY_LIMIT = 65_000
ALL_SERVICES = {"api-gateway", "inventory-service", "order-service", "notification-service"}


def store_failed(stack: Stack) -> float:
    """Spans Jaeger's storage refused since it started (Jaeger's own metrics)."""
    return span_counts(stack.jaeger_metrics_url, JAEGER_SPAN_COUNTERS)["store_failed"]


def trace_id_of(response: httpx.Response) -> str:
    return response.headers["traceresponse"].split("-")[1]


def wait_for_edge_trace(
    stack: Stack, trace_id: str, services: set[str], caller_span_id: str | None = None
) -> StoredTrace:
    """The trace, once it has these services and every span's parent is in it, except the
    gateway's server span, whose parent may be the caller's (never sent to Jaeger)."""
    deadline = time.monotonic() + 15
    while True:
        trace = fetch_trace(stack.jaeger_url, trace_id)
        if trace is not None and services <= trace.services:
            outside = [trace.parent_id(s) for s in trace.orphans]
            if outside == ([caller_span_id] if caller_span_id else []):
                return trace
        if time.monotonic() > deadline:
            seen = None if trace is None else (sorted(trace.services), len(trace.orphans))
            raise TimeoutError(f"trace {trace_id} incomplete in Jaeger: {seen}")
        time.sleep(0.2)


def gateway_server_span(trace: StoredTrace) -> dict:
    [span] = [
        s
        for s in trace.spans
        if trace.service_of(s) == "api-gateway" and StoredTrace.tags(s).get("span.kind") == "server"
    ]
    return span


# --- oversized request heads -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "path", "headers", "status"),
    [
        ("70 kB User-Agent", "/api/inventory/SKU123", {"User-Agent": "u" * 70_000}, 431),
        ("65 kB path", "/api/inventory/" + "p" * 65_000, {}, 414),
        ("20 kB query", "/api/inventory/SKU123?q=" + "q" * 20_000, {}, 414),
        (
            "many small headers",
            "/api/inventory/SKU123",
            {f"x-h{i}": "v" * 100 for i in range(200)},
            431,
        ),
        ("70 kB Referer on an order", "/api/orders", {"Referer": "r" * 70_000}, 431),
    ],
)
def test_an_oversized_head_is_refused_and_its_trace_is_complete(
    stack: Stack, gateway: httpx.Client, what: str, path: str, headers: dict, status: int
) -> None:
    failed_before = store_failed(stack)
    if path == "/api/orders":
        response = gateway.post(path, json=order_body(), headers=headers)
    else:
        response = gateway.get(path, headers=headers)

    assert response.status_code == status, (what, response.status_code, response.text[:200])
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status and "limit" in body["detail"]
    trace = wait_for_edge_trace(stack, body["traceId"], {"api-gateway"})
    assert len(trace.roots) == 1 and trace.roots[0] is gateway_server_span(trace)
    tags = StoredTrace.tags(trace.roots[0])
    assert tags["http.response.status_code"] == status
    assert all(len(str(v)) <= ATTRIBUTE_LIMIT for v in tags.values()), what
    assert store_failed(stack) == failed_before, "Jaeger's storage refused a span"


def test_a_long_head_under_the_limits_is_answered_and_its_attributes_are_cut(
    stack: Stack, gateway: httpx.Client
) -> None:
    """Under MAX_HEADER_BYTES but over the attribute limit: the normal answer, and a complete
    trace whose User-Agent is cut to OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT characters."""
    user_agent = "u" * (LIMITS.max_header_bytes - 1_000)
    assert len(user_agent) > ATTRIBUTE_LIMIT
    response = gateway.get("/api/inventory/SKU123", headers={"User-Agent": user_agent})
    assert response.status_code == 200, response.text
    trace = wait_for_edge_trace(stack, trace_id_of(response), {"api-gateway", "inventory-service"})
    tags = StoredTrace.tags(gateway_server_span(trace))
    assert tags["user_agent.original"] == user_agent[:ATTRIBUTE_LIMIT]


def unlimited_span(stack: Stack, value: str | list[str]) -> str:
    """One span from an exporter without span limits (another team's service, say), its
    ``user_agent.original`` set to ``value``; its trace id."""
    provider = TracerProvider(
        resource=Resource({"service.name": "unlimited-client"}),
        span_limits=SpanLimits(max_attribute_length=None),
    )
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{stack.ports.otlp_grpc}", insecure=True)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("GET") as span:
        span.set_attribute("user_agent.original", value)
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


def test_a_string_too_long_for_the_storage_is_stored_cut_down(stack: Stack) -> None:
    """The collector cuts every string attribute to what Jaeger's Badger can index, and says so
    in the value, where the span enters: nothing acknowledged is refused later."""
    failed_before = store_failed(stack)
    trace_id = unlimited_span(stack, "u" * (BADGER_KEY_LIMIT + 5_000))
    deadline, trace = time.monotonic() + 30, None
    while trace is None and time.monotonic() < deadline:
        trace = fetch_trace(stack.jaeger_url, trace_id) or time.sleep(0.2)
    assert trace is not None, "the cut-down span is not in Jaeger"
    value = StoredTrace.tags(trace.spans[0])["user_agent.original"]
    assert value == "u" * (4096 - len("[truncated]")) + "[truncated]"  # 4096 bytes in all
    assert store_failed(stack) == failed_before


def test_a_span_the_storage_refuses_shows_in_jaegers_counters(stack: Stack) -> None:
    """An array attribute is not cut (only strings are): one too long for a Badger key is
    refused by Jaeger, which says so where delivery checks look."""
    failed_before = store_failed(stack)
    trace_id = unlimited_span(stack, ["u" * 4000] * ((BADGER_KEY_LIMIT + 5_000) // 4000))
    deadline = time.monotonic() + 15
    while store_failed(stack) == failed_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store_failed(stack) == failed_before + 1
    assert fetch_trace(stack.jaeger_url, trace_id) is None
    assert "exceeded 65000 limit" in stack.process("jaeger").log_file.read_text()


# --- a caller's sampling decision ------------------------------------------------------------


def caller_traceparent(flags: str) -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-{flags}"


@pytest.mark.parametrize(
    ("what", "method", "path", "status", "services"),
    [
        (
            "failing read",
            "GET",
            "/api/orders/does-not-exist",
            404,
            {"api-gateway", "order-service"},
        ),
        ("order", "POST", "/api/orders", 201, ALL_SERVICES),
        ("out of stock", "POST", "/api/orders", 400, {"api-gateway", "inventory-service"}),
        ("stock read", "GET", "/api/inventory/SKU123", 200, {"api-gateway", "inventory-service"}),
    ],
)
def test_a_caller_that_says_not_sampled_still_gets_a_trace_id_that_jaeger_has(
    stack: Stack,
    gateway: httpx.Client,
    what: str,
    method: str,
    path: str,
    status: int,
    services: set[str],
) -> None:
    trace_id, span_id, traceparent = caller_traceparent("00")
    body = order_body("OUT-OF-STOCK" if status == 400 else "SKU123")
    response = gateway.request(
        method,
        path,
        json=body if method == "POST" else None,
        headers={"traceparent": traceparent, "tracestate": "caller=1"},
    )
    assert response.status_code == status, (what, response.text)
    # The caller's trace id is kept, and the gateway says it recorded (flags 01).
    _, returned_id, _, flags = response.headers["traceresponse"].split("-")
    assert (returned_id, flags) == (trace_id, "01")
    assert response.json().get("traceId", trace_id) == trace_id  # orders and problems carry it
    trace = wait_for_edge_trace(stack, trace_id, services, caller_span_id=span_id)
    assert gateway_server_span(trace)["references"][0]["spanID"] == span_id


def test_a_caller_that_says_sampled_is_continued_as_before(
    stack: Stack, gateway: httpx.Client
) -> None:
    trace_id, span_id, traceparent = caller_traceparent("01")
    response = gateway.get("/api/inventory/SKU123", headers={"traceparent": traceparent})
    assert response.status_code == 200
    assert trace_id_of(response) == trace_id
    wait_for_edge_trace(stack, trace_id, {"api-gateway", "inventory-service"}, span_id)
