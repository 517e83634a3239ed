"""Wording and number formats shared by every report renderer, so they all say the same."""

from __future__ import annotations

from datetime import UTC, datetime

from trace_analysis.model.results import GroupStats, Report, TraceResult


def ms(us: float) -> float:
    """Microseconds to milliseconds, to the microsecond."""
    return round(us / 1000, 3)


def duration(us: float) -> str:
    """A human duration: ``0.8 ms``, ``12.3 ms``, ``1,204 ms``, ``12.5 s``."""
    if us >= 10_000_000:
        return f"{us / 1_000_000:.1f} s"
    if us >= 1_000_000:
        return f"{us / 1000:,.0f} ms"
    return f"{us / 1000:.1f} ms"


def percent(part: float, whole: float = 1.0) -> str:
    if not whole:
        return "0%"
    value = 100 * part / whole
    return f"{value:.0f}%" if value >= 10 or value == 0 else f"{value:.1f}%"


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
    """``slower than 200 ms or failing`` / ``failing``."""
    threshold = report.criteria.threshold_us
    if report.criteria.errors_only or threshold is None:
        return "failing"
    return f"slower than {threshold / 1000:g} ms or failing"


def origin_text(report: Report) -> str:
    """Where ``--trace`` took its traces: ``file F`` or ``Jaeger at URL (API v3)``."""
    source = report.source
    if source.kind == "file":
        return f"file {source.input_path}"
    return f"Jaeger at {source.jaeger_url}" + (f" (API {source.api})" if source.api else "")


def source_text(report: Report) -> str:
    source = report.source
    if source.trace_ids:  # --trace: the traces asked for, not a window
        return f"trace {', '.join(source.trace_ids)} from {origin_text(report)}"
    if source.kind == "file":
        where = f"file {source.input_path}"
        if source.service:
            where += f", service {source.service}"
    else:
        where = f"{source.service} in Jaeger at {source.jaeger_url}, last {source.lookback}"
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


def culprit_text(trace: TraceResult) -> str | None:
    """Where the time went; said of slow traces only (in a fast failing trace it is noise)."""
    culprit = trace.culprit
    if culprit is None or not trace.slow:
        return None
    return (
        f"{culprit.service} {culprit.operation}: {duration(culprit.self_us)}, "
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
    return f"{origin.service} {origin.operation}: {origin.message}{extra}"


def faults_text(trace: TraceResult) -> str | None:
    if not trace.faults:
        return None
    parts = [f"{f.kind or 'fault'} {f.value}".strip() + f" in {f.service}" for f in trace.faults]
    return "injected " + ", ".join(parts)


def headline(report: Report) -> str:
    s = report.summary
    return (
        f"{s.traces:,} traces ({s.spans:,} spans): {s.slow:,} slow ({percent(s.slow, s.traces)}), "
        f"{s.errors:,} failing ({percent(s.errors, s.traces)}), {s.flagged:,} flagged"
    )


def group_cells(group: GroupStats) -> list[str]:
    """A service's or an operation's row after its name: count, p50, p95, p99, errors, rate."""
    p = group.latency
    return [
        f"{p.count:,}",
        duration(p.p50_us),
        duration(p.p95_us),
        duration(p.p99_us),
        f"{group.errors:,}",
        percent(group.errors, p.count),
    ]
