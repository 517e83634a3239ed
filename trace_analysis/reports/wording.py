"""Wording and number formats shared by every report renderer, so they all say the same."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from trace_analysis.model.results import (
    Criteria,
    GroupStats,
    InstanceFinding,
    InstanceStats,
    Report,
    Source,
    TraceResult,
)


def ms(us: float) -> float:
    """Microseconds to milliseconds, to the microsecond."""
    return round(us / 1000, 3)


def duration(us: float) -> str:
    """A duration in the unit that keeps its digits, figure by figure: ``5 µs``, ``2.5 µs``,
    ``850 µs``, ``1.2 ms``, ``12.3 ms``, ``1,204 ms``, ``12.5 s``. A 5 µs span next to a 420 s
    one reads "5 µs", never "0.0 ms"."""
    if us >= 10_000_000:
        return f"{us / 1_000_000:.1f} s"
    if us >= 1_000_000:
        return f"{us / 1000:,.0f} ms"
    if us >= 999.5:  # what would print as "1,000 µs"
        return f"{us / 1000:.1f} ms"
    if us < 9.95 and us != int(us):  # a fraction of a µs (a percentile between two spans)
        return f"{us:.1f} µs"
    return f"{us:,.0f} µs"


@dataclass(frozen=True, slots=True)
class Unit:
    """How one view (a table, a waterfall) writes its durations. Every figure takes the unit
    that keeps its digits (:func:`duration`): one unit per view made a sub-millisecond figure
    read "0.0 ms" beside large ones. The renderers still ask for their view's unit here."""

    def __call__(self, us: float) -> str:
        return duration(us)


MS = Unit()


def unit_for(*largest_us: float) -> Unit:
    """The unit of a view whose largest durations (µs) are ``largest_us``: :data:`MS`, which
    writes each figure in its own unit."""
    return MS


def trace_unit(*traces: TraceResult) -> Unit:
    """The unit of a view of ``traces``."""
    return MS


def groups_unit(groups: list[GroupStats]) -> Unit:
    """The unit of a table of services or operations."""
    return MS


def percent(part: float, whole: float = 1.0) -> str:
    if not whole:
        return "0%"
    value = 100 * part / whole
    return f"{value:,.0f}%" if value >= 10 or value == 0 else f"{value:.1f}%"


def iso(us: int | None) -> str | None:
    if us is None:
        return None
    moment = datetime.fromtimestamp(us / 1_000_000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def trace_link(report: Report, trace_id: str) -> str:
    """The trace's page: in the trace browser or Jaeger UI at the source's link base, else in
    Jaeger's UI at its query URL."""
    base = report.source.link_base or report.source.jaeger_url
    return f"{base.rstrip('/')}/trace/{trace_id}"


def criteria_text(report: Report) -> str:
    """``slower than 200 ms or failing`` / ``failing``; with a service or operation selected,
    what slow was judged on: ``slower than 200 ms (root span) or failing`` or ``whose
    order-service 'POST /orders' span is slower than 200 ms, or failing``."""
    criteria = report.criteria
    threshold = criteria.threshold_us
    if criteria.errors_only or threshold is None:
        return "failing"
    if criteria.by_span:
        return (
            f"whose {judged_span_text(criteria)} is slower than {threshold / 1000:g} ms, or failing"
        )
    judged = " (root span)" if criteria.selected else ""
    return f"slower than {threshold / 1000:g} ms{judged} or failing"


def judged_span_text(criteria: Criteria) -> str:
    """``order-service 'POST /orders' span``: the span --slow-by span judges."""
    names = [
        criteria.span_service or "",
        repr(criteria.span_operation) if criteria.span_operation else "",
    ]
    return " ".join(name for name in names if name) + " span"


def origin_text(report: Report) -> str:
    """Where ``--trace`` took its traces: ``file F`` or ``Jaeger at URL (API v3)``."""
    source = report.source
    if source.kind == "file":
        return f"file {source.input_path}"
    return _jaeger_text(source) + (f" (API {source.api})" if source.api else "")


def _jaeger_text(source: Source) -> str:
    """``Jaeger at URL``, and why that one when no ``--jaeger-url`` named it."""
    chosen = f" ({source.jaeger_chosen})" if source.jaeger_chosen else ""
    return f"Jaeger at {source.jaeger_url}{chosen}"


def source_text(report: Report) -> str:
    source = report.source
    if source.trace_ids:  # --trace: the traces asked for, not a window
        return f"trace {', '.join(source.trace_ids)} from {origin_text(report)}"
    if source.kind == "file":
        where = f"file {source.input_path}"
        if source.service:
            where += f", service {source.service}"
    else:
        where = f"{source.service} in {_jaeger_text(source)}, last {source.lookback}"
        if source.api:
            where += f" (API {source.api})"
    if source.operation:
        where += f", operation {source.operation!r}"
    return where


def flags(trace: TraceResult) -> list[str]:
    result = []
    if trace.slow:
        result.append("slow")
    if trace.error:
        result.append("error")
    if trace.incomplete:
        result.append("incomplete")
    return result


def culprit_text(trace: TraceResult, unit: Unit = MS, *, always: bool = False) -> str | None:
    """Where the time went; said of slow traces only (in a fast failing trace it is noise),
    unless ``always``: a trace asked for by id (``--trace``, the trace browser's page) is
    explained whole, as the terminal's trace view does."""
    culprit = trace.culprit
    if culprit is None or not (trace.slow or always):
        return None
    return (
        f"{culprit.service} {culprit.operation}: {unit(culprit.self_us)}, "
        f"{percent(culprit.share)} of the latency"
    )


def error_text(trace: TraceResult, spans_after: bool = False) -> str | None:
    """The first failing span and its message (and, if asked, how many failed after it)."""
    origin = trace.error_origin
    if origin is None:
        return None
    more = origin.error_spans - 1
    extra = ""
    if spans_after and more:
        extra = f" (then {more} more failing span{'s' if more > 1 else ''})"
    text = f"{origin.service} {origin.operation}: {origin.message}{extra}"
    if origin.outlier is not None:
        text += f"; on instance {origin.instance}, which stands out: {_figures(origin.outlier)}"
    return text


INSTANCE_COLUMNS = ("spans", "errors", "error rate", "p50", "p95")
INSTANCES_TITLE = "Per instance (services seen with several)"


def instance_cells(stats: InstanceStats, unit: Unit = MS) -> list[str]:
    """An instance's row after its service and id: spans, errors, error rate, p50, p95."""
    p = stats.latency
    return [
        f"{p.count:,}",
        f"{stats.errors:,}",
        percent(stats.errors, p.count),
        unit(p.p50_us),
        unit(p.p95_us),
    ]


def finding_text(finding: InstanceFinding) -> str:
    """``inventory-service instance X: 40% errors vs 0% on its 2 peers``."""
    return f"{finding.service} instance {finding.instance}: {_figures(finding)}"


def _figures(finding: InstanceFinding) -> str:
    peers = f"its {finding.peers} peer{'s' if finding.peers > 1 else ''}"
    if finding.measure == "errors":
        return f"{percent(finding.value)} errors vs {percent(finding.peers_value)} on {peers}"
    return f"p95 {duration(finding.value)} vs {duration(finding.peers_value)} on {peers}"


def faults_text(trace: TraceResult) -> str | None:
    """``injected latency 500ms in order-service (3 spans), error 503 in inventory-service``:
    each fault once, however many spans carried it."""
    if not trace.faults:
        return None
    counts = Counter(
        f"{f.kind or 'fault'} {f.value}".strip() + f" in {f.service}" for f in trace.faults
    )
    parts = [text + (f" ({n} spans)" if n > 1 else "") for text, n in counts.items()]
    return "injected " + ", ".join(parts)


NOTHING_JUDGED = "NOTHING JUDGED"


def headline(report: Report) -> str:
    """``145 traces (2,139 spans): 1 slow (0.7%), 4 failing (2.8%), 5 flagged``; with no trace
    read, that first: "0 flagged" of nothing would read as a pass."""
    s = report.summary
    if not s.traces:
        return (
            f"{NOTHING_JUDGED}: no trace to judge (an empty file or window, or a service or "
            "operation that matched none)"
        )
    return (
        f"{s.traces:,} traces ({s.spans:,} spans): {s.slow:,} slow ({percent(s.slow, s.traces)}), "
        f"{s.errors:,} failing ({percent(s.errors, s.traces)}), {s.flagged:,} flagged"
    )


def none_flagged_text(report: Report) -> str:
    """What the list of flagged traces says when it is empty: none matched, or none was read."""
    if not report.summary.traces:
        return f"No trace from {source_text(report)}."
    return f"No trace {criteria_text(report)}."


def group_cells(group: GroupStats, unit: Unit = MS) -> list[str]:
    """A service's or an operation's row after its name: count, p50, p95, p99, errors, rate."""
    p = group.latency
    return [
        f"{p.count:,}",
        unit(p.p50_us),
        unit(p.p95_us),
        unit(p.p99_us),
        f"{group.errors:,}",
        percent(group.errors, p.count),
    ]
