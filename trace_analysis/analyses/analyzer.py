"""Per-trace analysis: latency, errors, critical path and culprit, faults; and the stream loop.

Traces are analyzed one at a time as they are read, and only what the report needs of a
flagged trace is kept; the spans of every other trace are dropped as soon as the summary has
counted them, so memory does not grow with the size of the export or time window.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from trace_analysis.analyses.critical_path import critical_path, culprit, path_steps
from trace_analysis.analyses.instances import InstanceCounter, mark_outliers
from trace_analysis.analyses.summary import SummaryBuilder
from trace_analysis.formats.jaeger import JaegerTrace, Span, decode_logs
from trace_analysis.formats.status import BY_ERROR_TAG, BY_HTTP_STATUS, BY_STATUS
from trace_analysis.model.results import (
    Criteria,
    ErrorOrigin,
    Fault,
    Report,
    Source,
    Summary,
    TraceResult,
    WaterfallRow,
)
from trace_analysis.model.spans import build_spans, read_statuses
from trace_analysis.model.tree import SpanTree, build_tree

MAX_WATERFALL_ROWS = 400
_EVIDENCE_TEXT = {BY_STATUS: "status ERROR", BY_ERROR_TAG: "error tag set"}
_LOG_MESSAGE_KEYS = ("error.message", "message", "error.object")  # OpenTracing-era logs


@dataclass(slots=True)
class Outcome:
    """The result of reading a whole stream of traces."""

    traces: list[TraceResult]  # flagged, slowest first
    summary: Summary
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False  # the --limit was reached before the input ended

    def report(self, source: Source, criteria: Criteria, warnings: list[str]) -> Report:
        """The report of this outcome, read from ``source``; ``warnings`` come first."""
        return Report(
            source=source,
            criteria=criteria,
            summary=self.summary,
            traces=self.traces,
            warnings=warnings + self.warnings,
            generated_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            truncated=self.truncated,
        )


@dataclass(slots=True)
class Analyzer:
    """One pass over a stream of traces, keeping only findings and summary counts.

    ``service``/``operation`` keep only traces with a span of that service (and operation),
    as Jaeger's search does; ``limit`` stops after that many traces; ``waterfall`` keeps the
    per-span rows a waterfall draws; ``keep_all`` reports every trace, flagged or not
    (``--trace``).
    """

    criteria: Criteria
    service: str | None = None
    operation: str | None = None
    limit: int | None = None
    waterfall: bool = False
    keep_all: bool = False
    builder: SummaryBuilder = field(default_factory=SummaryBuilder)
    # per-instance figures: of a window, not of traces asked for by id (keep_all)
    instances: InstanceCounter = field(default_factory=InstanceCounter)
    flagged: list[TraceResult] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0  # traces given again after they were analyzed (live paging)
    merged: int = 0  # traces whose spans came in several entries of the input
    empty: int = 0
    anonymous_spans: int = 0  # spans under an empty or all-zero trace id: no trace to join
    truncated: bool = False

    def feed(self, traces: Iterable[JaegerTrace]) -> None:
        """Analyze ``traces`` as they come (stopping at the limit)."""
        # Spans link both ways (parent, children); the links are cut after each trace, so
        # every object is freed by reference counting, and the cyclic collector (which would
        # otherwise run over and over as millions of objects come and go) can be paused.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for trace in traces:
                if self.limit is not None and self.builder.traces >= self.limit:
                    self.truncated = True
                    break
                self._analyze(trace)
        finally:
            if collecting:
                gc.enable()

    def _analyze(self, trace: JaegerTrace) -> None:
        trace_id = trace.trace_id
        if not trace_id.strip().strip("0"):  # an invalid id (W3C, OTLP): nothing links them
            self.anonymous_spans += len(trace.spans)
            return
        if trace_id in self.seen:
            self.duplicates += 1
            return
        self.seen.add(trace_id)
        if trace.entries > 1:
            self.merged += 1
        spans, by_id, notes = build_spans(trace)
        if not spans:
            self.empty += 1
            return
        if (self.service or self.operation) and not _matches(spans, self.service, self.operation):
            return
        if not self.keep_all:
            self.instances.add(spans, by_id)
        tree = build_tree(spans, by_id)
        tree.notes[:0] = notes
        result = analyze_tree(
            trace_id, tree, self.criteria, self.builder, self.waterfall, trace, self.keep_all
        )
        tree.unlink()
        if result is not None:
            self.flagged.append(result)

    def outcome(self) -> Outcome:
        warnings = []
        if self.merged:
            warnings.append(
                f"{self.merged} trace(s) came in more than one entry; their spans were merged"
            )
        if self.duplicates:
            warnings.append(f"{self.duplicates} trace(s) appeared more than once; analyzed once")
        if self.empty:
            warnings.append(f"{self.empty} trace(s) without spans skipped")
        if self.anonymous_spans:
            warnings.append(
                f"{self.anonymous_spans:,} span(s) with an empty or all-zero trace id skipped: "
                "such an id is invalid (W3C Trace Context, OTLP), so no trace can be told apart"
            )
        flagged = sorted(self.flagged, key=lambda r: (-(r.judged_us or r.latency_us), r.trace_id))
        summary = self.builder.finish()
        summary.instances, summary.instance_findings = self.instances.finish()
        mark_outliers((trace.error_origin for trace in flagged), summary.instance_findings)
        return Outcome(flagged, summary, warnings, self.truncated)


def analyze_traces(
    traces: Iterable[JaegerTrace],
    criteria: Criteria,
    service: str | None = None,
    operation: str | None = None,
    limit: int | None = None,
    waterfall: bool = False,
) -> Outcome:
    """Analyze ``traces`` in one pass (see :class:`Analyzer` for the options)."""
    analyzer = Analyzer(criteria, service, operation, limit, waterfall)
    analyzer.feed(traces)
    return analyzer.outcome()


def analyze_tree(
    trace_id: str,
    tree: SpanTree,
    criteria: Criteria,
    builder: SummaryBuilder,
    waterfall: bool = False,
    trace: JaegerTrace | None = None,
    keep: bool = False,
) -> TraceResult | None:
    """Count one trace in the summary; return its findings if it is flagged (or ``keep``).

    ``trace`` is the decoded trace, whose skipped tags are decoded for a flagged trace (the
    critical path needs the span kinds)."""
    spans = tree.spans
    root = tree.root
    latency = root.duration
    error = False
    for span in spans:
        if span.error:
            error = True
            break
    judged = _judged_us(spans, criteria) if criteria.by_span else None
    slow = (
        criteria.threshold_us is not None
        and (latency if judged is None else judged) > criteria.threshold_us
    )
    flagged = error or (slow and not criteria.errors_only)
    if not flagged and not keep:
        builder.add_trace(spans, latency, slow, error, flagged, tree.incomplete)
        return None

    if trace is not None:
        read_statuses(trace, spans)
    order = tree.walk()  # may find the trace incomplete after all (looping parents)
    builder.add_trace(spans, latency, slow, error, flagged, tree.incomplete)
    first_start = min(span.start for span in spans)
    last_end = max(span.end for span in spans)
    segments = critical_path(root)
    steps = path_steps(segments, root.start)
    result = TraceResult(
        trace_id=trace_id,
        start_us=root.start,
        root_service=root.service,
        root_operation=root.operation,
        latency_us=latency,
        judged_us=judged,
        end_to_end_us=last_end - first_start,
        span_count=len(spans),
        services=sorted({span.service for span in spans}),
        slow=slow,
        error=error,
        incomplete=tree.incomplete,
        notes=list(tree.notes),
        error_origin=error_origin(tree) if error else None,
        culprit=culprit(steps, latency),
        critical_path=steps,
        faults=[
            Fault(s.span_id, s.service, s.operation, s.fault_kind, s.fault_value or "")
            for s in order
            if s.fault_kind is not None
        ],
        skew=tree.skew,
    )
    if waterfall:
        on_path = {id(span) for span, _, _ in segments}
        result.waterfall = waterfall_rows(tree, first_start, on_path)
        if len(result.waterfall) < len(spans):
            result.notes.append(f"waterfall shows the first {len(result.waterfall)} spans")
    return result


def error_origin(tree: SpanTree) -> ErrorOrigin | None:
    """The first failing span in causal order.

    A failing span whose descendants are all fine is where a failure started (its failing
    ancestors only passed it on); of several such, the one that started first.
    """
    failing_below: set[int] = set()
    origins: list[Span] = []
    errors = 0
    for span in reversed(tree.walk()):  # children before parents
        if span.error:
            errors += 1
            if id(span) not in failing_below:
                origins.append(span)
        if (span.error or id(span) in failing_below) and span.parent is not None:
            failing_below.add(id(span.parent))
    if not origins:
        return None
    first = min(origins, key=lambda s: (s.start, -s.duration))
    return ErrorOrigin(
        span_id=first.span_id,
        service=first.service,
        operation=first.operation,
        message=error_message(first),
        http_status=first.http_status,
        error_spans=errors,
        instance=first.instance,
    )


def error_message(span: Span) -> str:
    """The status message, else the recorded exception, else the evidence the span failed on
    (HTTP status, status ERROR, error tag): only what it carried."""
    if span.status_message:
        return span.status_message
    if span.event_message:
        return span.event_message
    for log in decode_logs(span.logs):
        fields = {f.key: f.value for f in log.fields}
        if fields.get("event") == "exception" or "exception.message" in fields:
            kind = fields.get("exception.type")
            text = fields.get("exception.message")
            if text or kind:
                return f"{kind}: {text}" if kind and text else str(text or kind)
        for key in _LOG_MESSAGE_KEYS:
            if fields.get(key):
                return str(fields[key])
    if span.error_evidence == BY_HTTP_STATUS or (span.http_status or 0) >= 400:
        return f"HTTP {span.http_status}"
    if span.error_evidence in (BY_STATUS, BY_ERROR_TAG):
        return f"{_EVIDENCE_TEXT[span.error_evidence]}, no message recorded"
    return "no message recorded"


def waterfall_rows(tree: SpanTree, origin_us: int, on_path: set[int]) -> list[WaterfallRow]:
    """The rows an HTML waterfall draws, parents before children; capped, since a trace of
    thousands of spans is read in Jaeger, not in a report."""
    depth: dict[int, int] = {}
    rows = []
    for span in tree.walk()[:MAX_WATERFALL_ROWS]:
        level = depth[id(span)] = depth.get(id(span.parent), -1) + 1 if span.parent else 0
        rows.append(
            WaterfallRow(
                span.span_id,
                level,
                span.service,
                span.operation,
                span.start - origin_us,
                span.duration,
                span.error,
                id(span) in on_path,
                span.http_status,
            )
        )
    return rows


def _judged_us(spans: list[Span], criteria: Criteria) -> int:
    """The longest span of the selected service/operation (0 if the trace has none)."""
    service, operation = criteria.span_service, criteria.span_operation
    return max(
        (
            span.duration
            for span in spans
            if (service is None or span.service == service)
            and (operation is None or span.operation == operation)
        ),
        default=0,
    )


def _matches(spans: list[Span], service: str | None, operation: str | None) -> bool:
    for span in spans:
        if (service is None or span.service == service) and (
            operation is None or span.operation == operation
        ):
            return True
    return False
