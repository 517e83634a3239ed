"""The analysis's building blocks on hand-made spans: critical path, skew, loops, percentiles,
and the tag pre-scan that lets most traces skip tag decoding (checked against full decoding)."""

from __future__ import annotations

import io
import json
import re
import time
from array import array
from pathlib import Path

import msgspec
import pytest

from tests.bench_modules import bench_module
from trace_analysis.analyses.analyzer import analyze_traces
from trace_analysis.analyses.critical_path import critical_path, culprit, path_steps
from trace_analysis.analyses.summary import percentiles
from trace_analysis.cli_common import parse_lookback
from trace_analysis.errors import AnalyzerError
from trace_analysis.formats.jaeger import JaegerTrace, Span, decode_envelope, decode_trace
from trace_analysis.model.results import Criteria
from trace_analysis.model.spans import build_spans, may_carry_status, read_status
from trace_analysis.model.tree import build_tree

REPO = Path(__file__).resolve().parents[2]
EPOCH = 1_700_000_000_000_000  # µs; times below are offsets from it (0 means "not recorded")


def span(span_id: str, parent: str | None, start: int, duration: int, service: str = "svc") -> Span:
    result = Span(
        span_id=span_id, start=EPOCH + start, duration=duration, operation=f"op-{span_id}"
    )
    result.parent_id = parent
    result.service = service
    result.clock = service
    return result


def path_of(spans: list[Span]) -> list[tuple[str, int]]:
    tree = build_tree(spans)
    tree.walk()
    steps = path_steps(critical_path(tree.root), tree.root.start)
    return [(step.span_id, step.self_us) for step in steps]


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        # root 0-100: a 10-40 and b 45-90 in sequence; c 50-60 runs in parallel inside root:
        # the path follows the last finishing child backwards
        (
            [
                ("root", None, 0, 100),
                ("a", "root", 10, 30),
                ("b", "root", 45, 45),
                ("c", "root", 50, 10),
            ],
            [("root", 10 + 5 + 10), ("a", 30), ("b", 45)],
        ),
        # a zero-length child, and nesting
        (
            [
                ("root", None, 0, 100),
                ("empty", "root", 50, 0),
                ("mid", "root", 20, 60),
                ("leaf", "mid", 30, 40),
            ],
            [("root", 40), ("mid", 20), ("leaf", 40)],
        ),
    ],
)
def test_critical_path_self_times(
    spans: list[tuple[str, str | None, int, int]], expected: list[tuple[str, int]]
) -> None:
    assert path_of([span(*s) for s in spans]) == expected


def test_children_outliving_their_parent_are_clipped() -> None:
    # an async child running past the root's end counts only up to it
    spans = [span("root", None, 0, 100), span("async", "root", 60, 500)]
    assert path_of(spans) == [("root", 60), ("async", 40)]
    steps = path_steps(critical_path(build_tree(spans).root), 0)
    found = culprit(steps, 100)
    assert found is not None and (found.operation, found.share) == ("op-root", 0.6)


def test_deep_and_wide_traces_are_walked_without_recursion_or_quadratic_time() -> None:
    deep = [span("0", None, 0, 100_000)]
    deep += [span(str(i), str(i - 1), i, 100_000 - 2 * i) for i in range(1, 5_000)]
    assert sum(self_us for _, self_us in path_of(deep)) == 100_000
    wide = [span("root", None, 0, 1_000_000)]
    wide += [span(f"c{i}", "root", i * 50, 40) for i in range(20_000)]
    started = time.perf_counter()
    assert sum(self_us for _, self_us in path_of(wide)) == 1_000_000
    assert time.perf_counter() - started < 5  # rescanning the children per step: minutes


def test_skew_moves_a_foreign_child_and_its_process_into_the_parent() -> None:
    spans = [
        span("root", None, 1_000, 100, "gateway"),
        span("call", "root", 1_010, 80, "gateway"),
        span("server", "call", 900, 60, "inventory"),  # its clock is 120 µs behind
        span("db", "server", 910, 20, "inventory"),
        span("async", "server", 980, 500, "inventory"),  # same clock as server: untouched
    ]
    tree = build_tree(spans)
    tree.walk()
    server, db, late = spans[2], spans[3], spans[4]
    assert [(fix.span_id, fix.shift_us) for fix in tree.skew] == [("server", 120)]
    assert (server.start, db.start, late.start) == (EPOCH + 1_020, EPOCH + 1_030, EPOCH + 1_100)
    assert any("clock skew: inventory" in note for note in tree.notes)


def test_a_loop_of_parent_references_is_broken_not_followed_forever() -> None:
    spans = [span("root", None, 0, 10), span("x", "y", 1, 5), span("y", "x", 2, 3)]
    tree = build_tree(spans)
    assert len(tree.walk()) == 3
    assert tree.incomplete and any("loop" in note for note in tree.notes)


def test_percentiles_interpolate_between_ranks() -> None:
    result = percentiles(array("q", [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]))
    assert (result.count, result.p50_us, result.max_us) == (10, 55, 100)
    assert result.p95_us == pytest.approx(95.5) and result.p99_us == pytest.approx(99.1)
    assert percentiles(array("q")).count == 0


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("15m", 900_000_000),
        ("1h", 3_600_000_000),
        ("2d", 172_800_000_000),
        ("1.5h", 5_400_000_000),
        ("90s", 90_000_000),
    ],
)
def test_lookback(text: str, us: int) -> None:
    assert parse_lookback(text) == us


@pytest.mark.parametrize("text", ["", "0h", "h", "5", "3 days", "-1h"])
def test_bad_lookback(text: str) -> None:
    with pytest.raises(AnalyzerError):
        parse_lookback(text)


def _generated_export(spans: int) -> bytes:
    module = bench_module("generate_export")
    out = io.StringIO()
    module.write_export(out, spans, seed=7, indent=None)
    return out.getvalue().encode()


def test_tag_prescan_never_skips_a_trace_that_has_an_error_or_a_fault() -> None:
    """Over a realistic export, a trace the pre-scan lets skip tag decoding has, decoded in
    full, no failing span and no fault; and the ones it sends to decoding are mostly real."""
    data = _generated_export(20_000)
    skipped = scanned = real = 0
    for index, raw in enumerate(decode_envelope(data, "generated")):
        trace = decode_trace(raw, "generated", index)
        spans, _, _ = build_spans(JaegerTrace(spans=trace.spans, trace_id=trace.trace_id))
        has_status = any(s.error or s.fault_kind is not None for s in spans)
        if may_carry_status(trace.encoded):
            scanned += 1
            real += has_status
        else:
            skipped += 1
            assert not has_status, trace.trace_id
    assert skipped > 5 * scanned and real == scanned


def test_tag_prescan_reads_pretty_printed_json_and_distrusts_odd_key_order() -> None:
    for name in ("legacy_tags.json", "error_only.json", "slow_only.json"):
        text = (REPO / "tests" / "fixtures" / "traces" / name).read_bytes()
        for index, raw in enumerate(decode_envelope(text, name)):
            trace = decode_trace(raw, name, index)
            spans, _, _ = build_spans(JaegerTrace(spans=trace.spans, trace_id=trace.trace_id))
            if any(s.error or s.fault_kind is not None for s in spans):
                assert may_carry_status(trace.encoded), (name, index)
    value_first = b'{"spans":[{"tags":[{"value":503,"key":"http.status_code"}]}]}'
    assert may_carry_status(value_first)
    assert not may_carry_status(b'{"tags":[{"key":"http.response.status_code","value":201}]}')
    assert may_carry_status(b'{"tags":[{"key":"http.response.status_code","value":"503"}]}')


def test_malformed_tags_in_a_trace_that_needs_them_name_the_span() -> None:
    bad_span = {"spanID": "s1", "startTime": 1, "duration": 2, "tags": {"error": True}}
    raw = json.dumps({"traceID": "t1", "spans": [bad_span]}).encode()
    trace = decode_trace(msgspec.Raw(raw), "x.json", 0)
    trace.encoded = None  # no pre-scan: tags are read
    expected = "x.json: trace t1: unexpected shape: Expected `array"
    with pytest.raises(AnalyzerError, match=re.escape(expected)):
        read_status(trace.spans[0], "t1", "x.json")


def test_streams_a_large_export_in_bounded_memory(tmp_path: Path) -> None:
    """The analysis keeps the findings, not the traces: flagged results only."""
    path = tmp_path / "export.json"
    path.write_bytes(_generated_export(30_000))
    from trace_analysis.sources.files import iter_file_traces

    outcome = analyze_traces(iter_file_traces(path), Criteria(200_000))
    assert outcome.summary.spans >= 30_000
    assert 0 < len(outcome.traces) < outcome.summary.traces / 5
    assert all(t.waterfall is None for t in outcome.traces)
