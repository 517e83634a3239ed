"""The export path's own rules, in process: batch retry until a deadline, the edge sampler, span
limits, and this project's SDK defaults as .env.example documents them.

The same behaviour against the real collector and Jaeger: tests/reliability/test_collector_outage.py
(retry, queue, shutdown line) and tests/e2e/test_edge_telemetry.py (limits, sampling).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from servicekit import export
from servicekit.export import RetryingSpanExporter
from servicekit.sampling import EdgeSampler
from servicekit.telemetry import SDK_DEFAULTS, Telemetry, sdk_setting
from tests.compose_model import parse_env_example
from tests.unit.conftest import ORDER, build_stack

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736


class FlakyExporter(SpanExporter):
    """Refuses the first ``failures`` calls, then accepts; records every call."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.shut_down or self.calls <= self.failures:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut_down = True


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "RETRY_PAUSE_SECONDS", 0.01)


SPANS = [object()] * 3  # the wrapper only counts them


def test_a_refused_batch_is_retried_until_accepted() -> None:
    inner = FlakyExporter(failures=5)
    exporter = RetryingSpanExporter(inner, retry_seconds=30)
    assert exporter.export(SPANS) is SpanExportResult.SUCCESS  # type: ignore[arg-type]
    assert inner.calls == 6
    assert (exporter.exported, exporter.dropped) == (3, 0)


def test_a_batch_refused_past_the_deadline_is_dropped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = FlakyExporter(failures=10**9)
    exporter = RetryingSpanExporter(inner, retry_seconds=0.2, endpoint="http://collector:4317")
    assert exporter.export(SPANS) is SpanExportResult.FAILURE  # type: ignore[arg-type]
    assert inner.calls > 1
    assert (exporter.exported, exporter.dropped) == (0, 3)
    assert "dropped 3 spans: http://collector:4317 did not accept them" in caplog.text


def test_stop_retrying_ends_a_retry_at_once_and_refuses_later_batches() -> None:
    inner = FlakyExporter(failures=10**9)
    exporter = RetryingSpanExporter(inner, retry_seconds=3600)
    results: list[SpanExportResult] = []
    worker = threading.Thread(target=lambda: results.append(exporter.export(SPANS)))  # type: ignore[arg-type]
    worker.start()
    exporter.stop_retrying()
    worker.join(timeout=5)
    assert not worker.is_alive() and results == [SpanExportResult.FAILURE]
    assert inner.shut_down
    calls = inner.calls
    assert exporter.export(SPANS) is SpanExportResult.FAILURE  # type: ignore[arg-type]
    assert inner.calls == calls, "no new attempt after stop_retrying"
    assert exporter.dropped == 6


def remote_parent(sampled: bool, state: TraceState | None = None) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    parent = SpanContext(TRACE_ID, 0x00F067AA0BA902B7, True, flags, state or TraceState())
    return trace.set_span_in_context(NonRecordingSpan(parent))


def test_the_edge_records_a_caller_that_said_not_sampled_and_drops_its_tracestate() -> None:
    sampler = EdgeSampler(ParentBased(ALWAYS_ON))
    state = TraceState([("vendor", "alice@example.com")])
    result = sampler.should_sample(remote_parent(False, state), TRACE_ID, "GET")
    assert result.decision is Decision.RECORD_AND_SAMPLE
    assert result.trace_state == TraceState(), "client text is not exported or forwarded"
    # Without the edge sampler the caller decides: the bug.
    assert ParentBased(ALWAYS_ON).should_sample(remote_parent(False), TRACE_ID, "GET").decision is (
        Decision.DROP
    )


def test_the_edge_decides_by_its_own_ratio_whatever_the_caller_says() -> None:
    never = EdgeSampler(ParentBased(TraceIdRatioBased(0.0)))
    assert never.should_sample(remote_parent(True), TRACE_ID, "GET").decision is Decision.DROP


def test_spans_with_a_local_parent_follow_it() -> None:
    sampler = EdgeSampler(ParentBased(ALWAYS_ON))
    local = SpanContext(TRACE_ID, 1, False, TraceFlags(TraceFlags.DEFAULT))
    context = trace.set_span_in_context(NonRecordingSpan(local))
    assert sampler.should_sample(context, TRACE_ID, "SELECT").decision is Decision.DROP


def test_long_attribute_values_are_cut_to_the_default_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", raising=False)
    monkeypatch.delenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", raising=False)
    spans = InMemorySpanExporter()
    telemetry = Telemetry.create("limits", "1", exporter=spans, set_global=False)
    with telemetry.tracer.start_as_current_span("GET") as span:
        span.set_attribute("user_agent.original", "u" * 70_000)
        span.add_event("e", {"exception.message": "m" * 70_000})
    [finished] = spans.get_finished_spans()
    limit = SDK_DEFAULTS["OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"]
    assert len(finished.attributes["user_agent.original"]) == limit  # type: ignore[index,arg-type]
    assert len(finished.events[0].attributes["exception.message"]) == limit  # type: ignore[index,arg-type]


def test_the_attribute_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "10")
    spans = InMemorySpanExporter()
    telemetry = Telemetry.create("limits", "1", exporter=spans, set_global=False)
    with telemetry.tracer.start_as_current_span("GET") as span:
        span.set_attribute("url.path", "/" + "p" * 100)
    assert spans.get_finished_spans()[0].attributes["url.path"] == "/" + "p" * 9  # type: ignore[index]


def test_sdk_defaults_are_the_ones_env_example_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    active, _, _ = parse_env_example()
    for name, default in SDK_DEFAULTS.items():
        assert active[name] == str(default), name
        monkeypatch.delenv(name, raising=False)
        assert sdk_setting(name) == default
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "lots")
    with pytest.raises(ValueError, match="OTEL_BSP_MAX_QUEUE_SIZE='lots'"):
        sdk_setting("OTEL_BSP_MAX_QUEUE_SIZE")


@pytest.mark.anyio
@pytest.mark.parametrize("caller_flags", ["00", "01", None])
async def test_under_a_ratio_sampler_an_unrecorded_order_names_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caller_flags: str | None
) -> None:
    """The edge's own decision (ratio 0 here) wins over the caller's flag either way, and an
    answer whose trace is not recorded says so: traceId null, traceresponse not sampled."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    stack = build_stack(tmp_path)
    headers = {}
    if caller_flags:
        headers["traceparent"] = f"00-{TRACE_ID:032x}-00f067aa0ba902b7-{caller_flags}"
    try:
        response = await stack.client.post("/api/orders", json=ORDER, headers=headers)
    finally:
        await stack.client.aclose()
    assert response.status_code == 201
    assert response.json()["traceId"] is None
    flags = int(response.headers["traceresponse"].rsplit("-", 1)[1], 16)
    assert not flags & 0x01, "traceresponse says the trace was not sampled"
    assert stack.spans() == []


@pytest.mark.anyio
async def test_the_gateway_records_a_caller_that_said_not_sampled(tmp_path: Path) -> None:
    stack = build_stack(tmp_path)
    traceparent = f"00-{TRACE_ID:032x}-00f067aa0ba902b7-00"
    try:
        response = await stack.client.post(
            "/api/orders", json=ORDER, headers={"traceparent": traceparent}
        )
    finally:
        await stack.client.aclose()
    assert response.json()["traceId"] == f"{TRACE_ID:032x}"
    assert response.headers["traceresponse"].endswith("-01")
    services = {s.resource.attributes["service.name"] for s in stack.spans(f"{TRACE_ID:032x}")}
    assert services == {"api-gateway", "inventory-service", "order-service", "notification-service"}


def test_importing_telemetry_changes_nothing_until_a_service_sets_it_up() -> None:
    """No import-time side effects: the semconv opt-in and the ``traceresponse`` propagator are
    set by ``Telemetry.create``, not by ``import servicekit.telemetry``."""
    probe = """
import os
from opentelemetry.instrumentation.propagators import get_global_response_propagator
import servicekit.telemetry as telemetry
before = (os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN"), get_global_response_propagator())
telemetry.configure_process()
after = (os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN"), type(get_global_response_propagator()))
print(before == (None, None), after[0], after[1].__name__)
"""
    env = {k: v for k, v in os.environ.items() if k != "OTEL_SEMCONV_STABILITY_OPT_IN"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert out == ["True", "http,database", "TraceResponsePropagator"]


def test_the_resource_is_hashed_once_and_still_groups_spans_in_one_resource() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource

    from servicekit.telemetry import build_resource

    resource = build_resource("inventory-service", "1.2.3")
    plain = Resource(resource.attributes, resource.schema_url)
    assert (hash(resource), resource) == (hash(plain), plain)  # a drop-in Resource
    assert resource._hash == hash(plain), "kept after the first hash, not serialised again"
    exporter = InMemorySpanExporter()
    telemetry = Telemetry.create("inventory-service", "1.2.3", exporter=exporter)
    for name in ("a", "b", "c"):
        telemetry.tracer.start_span(name).end()
    telemetry.provider.force_flush()
    request = encode_spans(exporter.get_finished_spans())
    [resource_spans] = request.resource_spans  # every span under the one resource
    assert sum(len(scope.spans) for scope in resource_spans.scope_spans) == 3
    telemetry.shutdown()
