"""The analysis of saved Jaeger exports, one scenario per fixture (tests/fixtures/traces)."""

from __future__ import annotations

import pytest

from tests.unit.test_analyzer_support import FIXTURES, analyze_fixture, run_cli, trace_ids


def test_slow_only_names_the_slow_service_and_its_fault() -> None:
    outcome = analyze_fixture("slow_only.json")
    (trace,) = outcome.traces
    assert trace.slow and not trace.error and trace.error_origin is None
    assert trace.latency_us == 611_000  # the root span, not Jaeger's minDuration
    assert trace.end_to_end_us > trace.latency_us  # the notification send outlives the root
    assert trace.culprit is not None
    assert (trace.culprit.service, trace.culprit.operation) == (
        "inventory-service",
        "POST /inventory/reserve",
    )
    assert trace.culprit.share == pytest.approx(0.98, abs=0.01)
    assert [(f.service, f.kind, f.value) for f in trace.faults] == [
        ("inventory-service", "latency", "600")
    ]
    path = [(step.service, step.operation) for step in trace.critical_path]
    assert path[0] == ("api-gateway", "POST /api/orders")
    assert ("inventory-service", "POST /inventory/reserve") in path
    assert ("notification-service", "send_notification") not in path  # async: not waited for
    assert sum(step.self_us for step in trace.critical_path) == trace.latency_us
    assert not trace.incomplete and trace.notes == []


def test_error_only_reports_the_first_failing_span_and_its_exception() -> None:
    outcome = analyze_fixture("error_only.json")
    (trace,) = outcome.traces
    assert trace.error and not trace.slow
    origin = trace.error_origin
    assert origin is not None
    assert (origin.service, origin.operation) == ("inventory-service", "POST /inventory/reserve")
    assert "insufficient stock for OUT-OF-STOCK" in origin.message
    assert origin.message.startswith("inventory_service.store.InsufficientStock")
    assert origin.error_spans == 2  # the gateway's client span failed because of it
    assert origin.http_status == 400


def test_slow_and_failing_trace_has_both_flags_culprit_and_cause() -> None:
    (trace,) = analyze_fixture("slow_and_error.json").traces
    assert trace.slow and trace.error
    assert trace.latency_us == 2_010_000
    assert trace.end_to_end_us == 5_005_500  # the hung order-service span kept running
    assert trace.culprit is not None and trace.culprit.service == "order-service"
    assert trace.error_origin is not None
    assert trace.error_origin.service == "order-service"
    assert trace.error_origin.message == "injected fault in order-service: timeout 5000"
    assert [f.kind for f in trace.faults] == ["timeout"]
    assert trace.skew == []  # a child longer than its caller is a timeout, not clock skew


def test_neither_flags_nothing_but_counts_everything() -> None:
    outcome = analyze_fixture("neither.json")
    assert outcome.traces == []
    summary = outcome.summary
    assert (summary.traces, summary.slow, summary.errors, summary.flagged) == (2, 0, 0, 0)
    assert summary.spans == 13
    assert {g.service for g in summary.services} == {
        "api-gateway",
        "inventory-service",
        "order-service",
        "notification-service",
    }


def test_orphan_spans_make_the_trace_incomplete_but_still_analyzed() -> None:
    (trace,) = analyze_fixture("orphans.json").traces
    assert trace.incomplete
    assert any("parent is missing" in note for note in trace.notes)
    assert trace.root_operation == "POST /api/orders"
    assert trace.culprit is not None and trace.culprit.service == "inventory-service"
    assert trace.span_count == 9


def test_missing_root_uses_the_earliest_span_and_says_so() -> None:
    outcome = analyze_fixture("missing_root.json")
    (trace,) = outcome.traces
    assert trace.incomplete
    assert (trace.root_service, trace.root_operation) == ("api-gateway", "POST")
    assert trace.latency_us == 301_000  # the earliest top span: the first client call
    assert any("root span missing" in note for note in trace.notes)
    assert outcome.summary.incomplete == 1


def test_several_roots_take_the_earliest_and_say_so() -> None:
    (trace,) = analyze_fixture("several_roots.json").traces
    assert trace.latency_us == 261_000
    assert trace.critical_path[0].start_us == 0  # the path starts at the chosen root
    assert trace.critical_path[0].operation == "POST /api/orders"
    assert any("2 root spans" in note for note in trace.notes)
    assert not trace.incomplete


def test_clock_skew_is_corrected_and_reported() -> None:
    (trace,) = analyze_fixture("clock_skew.json").traces
    assert [fix.service for fix in trace.skew] == ["notification-service"]
    assert trace.skew[0].shift_us == 80_000
    assert any("clock skew" in note for note in trace.notes)
    # corrected, the async send ends ~20 ms after the root instead of 60 ms before it ends
    assert trace.end_to_end_us == 430_600
    assert trace.culprit is not None and trace.culprit.service == "inventory-service"


def test_legacy_tags_and_otlp_status_are_both_errors() -> None:
    outcome = analyze_fixture("legacy_tags.json")
    failing = {trace.trace_id: trace for trace in outcome.traces}
    ids = trace_ids("legacy_tags.json")
    assert set(failing) == set(ids[:5])
    messages = {tid: failing[tid].error_origin.message for tid in ids[:5]}  # type: ignore[union-attr]
    assert messages == {
        ids[0]: "error tag set, no message recorded",  # error=true (bool)
        ids[1]: "error tag set, no message recorded",  # error="true" (string)
        ids[2]: "boom",  # otel.status_code=ERROR + description
        ids[3]: "HTTP 503",  # legacy http.status_code on a server span
        ids[4]: "HTTP 500",  # http.response.status_code on a server span
    }
    assert outcome.summary.errors == 5 and outcome.summary.traces == 9


def test_duplicated_spans_and_traces_are_counted_once() -> None:
    outcome = analyze_fixture("duplicate_spans.json")
    (trace,) = outcome.traces
    assert trace.span_count == 10
    # two spans delivered twice in the first copy, and the 12 of the second copy: merged
    assert any("14 duplicate span(s) ignored" in note for note in trace.notes)
    assert outcome.summary.traces == 1 and outcome.summary.spans == 10
    assert outcome.warnings == ["1 trace(s) came in more than one entry; their spans were merged"]


def test_errors_only_ignores_slow_traces() -> None:
    outcome = analyze_fixture("mixed.json", errors_only=True)
    assert outcome.traces and all(trace.error for trace in outcome.traces)
    assert {t.trace_id for t in outcome.traces} == {
        "e1000000000000000000000000000002",
        "b0000000000000000000000000000003",
    }


def test_threshold_is_strictly_greater_than() -> None:
    assert [t.trace_id for t in analyze_fixture("slow_only.json", threshold_ms=611).traces] == []
    assert len(analyze_fixture("slow_only.json", threshold_ms=610.999).traces) == 1


def test_service_and_operation_filter_saved_exports() -> None:
    only_reads = analyze_fixture(
        "neither.json", service="order-service", operation="GET /orders/{order_id}"
    )
    assert only_reads.summary.traces == 1
    none = analyze_fixture("neither.json", service="no-such-service")
    assert none.summary.traces == 0


def test_limit_stops_early_and_says_so() -> None:
    outcome = analyze_fixture("mixed.json", limit=2)
    assert outcome.summary.traces == 2 and outcome.truncated
    assert not analyze_fixture("mixed.json", limit=7).truncated


def test_empty_result_is_a_clean_report(capsys: pytest.CaptureFixture[str]) -> None:
    empty = FIXTURES / "empty.json"
    result = run_cli(capsys, "200", "--input", empty, "-f", "json")
    assert result.code == 0, result.err
    report = result.json()
    assert report["traces"] == [] and report["summary"]["traces"] == 0
    assert report["summary"]["latency_ms"] == {"count": 0, "p50": 0, "p95": 0, "p99": 0, "max": 0}
    table = run_cli(capsys, "200", "--input", empty)
    assert table.code == 0 and "NOTHING JUDGED: no trace to judge" in table.out
    assert f"No trace from file {empty}." in table.out
