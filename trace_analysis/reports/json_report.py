"""The JSON report: a stable, documented schema (``report.schema.json``, docs/analyzer.md).

Field names and meanings only change with ``schema_version``; new fields may be added. Times
are milliseconds (to the microsecond), instants are ISO 8601 UTC.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import msgspec

from servicekit.terminal import visible_json
from trace_analysis.model.results import (
    Criteria,
    ErrorOrigin,
    GroupStats,
    InstanceFinding,
    InstanceStats,
    Percentiles,
    Report,
    TraceResult,
)
from trace_analysis.reports.wording import finding_text, iso, ms, trace_link

SCHEMA_VERSION = 1
# named in JSON as in the model; the instance and whether it stands out are written apart
_ORIGIN_FIELDS = tuple(f.name for f in fields(ErrorOrigin) if f.name not in ("instance", "outlier"))


def render_json(report: Report) -> str:
    return encode_document(report_dict(report))


def encode_document(document: dict[str, Any]) -> str:
    """``document`` as indented JSON text, every character a terminal would act on escaped
    (``servicekit/terminal.py``): the report is printed to one as often as to a file."""
    # msgspec's encoder and formatter are C: the stdlib's json goes pure Python once indented
    encoded = msgspec.json.format(msgspec.json.encode(document), indent=2)
    return visible_json(encoded.decode()) + "\n"


def report_dict(report: Report) -> dict[str, Any]:
    source = report.source
    summary = report.summary
    traces = summary.traces
    outliers = {(f.service, f.instance) for f in summary.instance_findings}
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": report.generated_at,
        "source": {
            "kind": source.kind,
            "jaeger_url": source.jaeger_url,
            "input": source.input_path,
            "service": source.service,
            "operation": source.operation,
            "lookback": source.lookback,
            "start": iso(source.start_us),
            "end": iso(source.end_us),
            "queries": source.queries,
            "api": source.api,
            "trace_ids": source.trace_ids,
        },
        "criteria": {
            "threshold_ms": (
                None if report.criteria.threshold_us is None else ms(report.criteria.threshold_us)
            ),
            "errors_only": report.criteria.errors_only,
            "slow_by": _slow_by(report.criteria),
        },
        "truncated": report.truncated,
        "summary": {
            "traces": traces,
            "spans": summary.spans,
            "slow": summary.slow,
            "errors": summary.errors,
            "flagged": summary.flagged,
            "incomplete": summary.incomplete,
            "slow_rate": _rate(summary.slow, traces),
            "error_rate": _rate(summary.errors, traces),
            "latency_ms": _percentiles(summary.latency),
            "services": [_group(group, "requests") for group in summary.services],
            "operations": [_group(group, "spans") for group in summary.operations],
            "instances": [_instance(s, outliers) for s in summary.instances],
            "instance_findings": [_finding(f) for f in summary.instance_findings],
        },
        "traces": [_trace(report, trace) for trace in report.traces],
        "warnings": list(report.warnings),
    }


def _trace(report: Report, trace: TraceResult) -> dict[str, Any]:
    result = _findings(report, trace)
    if trace.waterfall is not None:
        result["waterfall"] = [
            {
                "span_id": row.span_id,
                "depth": row.depth,
                "service": row.service,
                "operation": row.operation,
                "start_offset_ms": ms(row.start_us),
                "duration_ms": ms(row.duration_us),
                "error": row.error,
                "http_status": row.http_status,
                "critical_path": row.on_critical_path,
            }
            for row in trace.waterfall
        ]
    return result


def _findings(report: Report, trace: TraceResult) -> dict[str, Any]:
    origin = trace.error_origin
    culprit = trace.culprit
    return {
        "trace_id": trace.trace_id,
        "jaeger_url": trace_link(report, trace.trace_id),
        "start": iso(trace.start_us),
        "root": {"service": trace.root_service, "operation": trace.root_operation},
        "latency_ms": ms(trace.latency_us),
        "judged_ms": None if trace.judged_us is None else ms(trace.judged_us),
        "end_to_end_ms": ms(trace.end_to_end_us),
        "span_count": trace.span_count,
        "services": trace.services,
        "slow": trace.slow,
        "error": trace.error,
        "incomplete": trace.incomplete,
        "notes": trace.notes,
        "error_origin": None if origin is None else _origin(origin),
        "culprit": None
        if culprit is None
        else {
            "service": culprit.service,
            "operation": culprit.operation,
            "self_time_ms": ms(culprit.self_us),
            "share": round(culprit.share, 4),
        },
        "critical_path": [
            {
                "span_id": step.span_id,
                "service": step.service,
                "operation": step.operation,
                "start_offset_ms": ms(step.start_us),
                "self_time_ms": ms(step.self_us),
            }
            for step in trace.critical_path
        ],
        "faults": [
            {
                "span_id": fault.span_id,
                "service": fault.service,
                "operation": fault.operation,
                "kind": fault.kind,
                "value": fault.value,
            }
            for fault in trace.faults
        ],
        "clock_skew": [
            {"span_id": fix.span_id, "service": fix.service, "shift_ms": ms(fix.shift_us)}
            for fix in trace.skew
        ],
    }


def _percentiles(p: Percentiles) -> dict[str, Any]:
    return {
        "count": p.count,
        "p50": ms(p.p50_us),
        "p95": ms(p.p95_us),
        "p99": ms(p.p99_us),
        "max": ms(p.max_us),
    }


def _group(group: GroupStats, count_name: str) -> dict[str, Any]:
    result: dict[str, Any] = {"service": group.service}
    if group.operation is not None:
        result["operation"] = group.operation
    result.update(
        {
            count_name: group.latency.count,
            "errors": group.errors,
            "error_rate": round(group.error_rate, 4),
            "p50_ms": ms(group.latency.p50_us),
            "p95_ms": ms(group.latency.p95_us),
            "p99_ms": ms(group.latency.p99_us),
            "max_ms": ms(group.latency.max_us),
        }
    )
    return result


def _origin(origin: ErrorOrigin) -> dict[str, Any]:
    result = {name: getattr(origin, name) for name in _ORIGIN_FIELDS}
    result["instance"] = origin.instance or None
    result["instance_stands_out"] = origin.outlier is not None
    return result


def _instance(stats: InstanceStats, outliers: set[tuple[str, str]]) -> dict[str, Any]:
    return {
        "service": stats.service,
        "instance": stats.instance,
        "spans": stats.latency.count,
        "errors": stats.errors,
        "error_rate": round(stats.error_rate, 4),
        "p50_ms": ms(stats.latency.p50_us),
        "p95_ms": ms(stats.latency.p95_us),
        "stands_out": (stats.service, stats.instance) in outliers,
    }


def _finding(finding: InstanceFinding) -> dict[str, Any]:
    to_json = (lambda v: round(v, 4)) if finding.measure == "errors" else ms
    return {
        "service": finding.service,
        "instance": finding.instance,
        "measure": finding.measure,
        "value": to_json(finding.value),
        "peers_value": to_json(finding.peers_value),
        "peers": finding.peers,
        "p_value": finding.p_value,
        "text": finding_text(finding),
    }


def _slow_by(criteria: Criteria) -> dict[str, Any] | None:
    """What slow was judged on: None for the root span, else the span selected."""
    if not criteria.by_span:
        return None
    return {"service": criteria.span_service, "operation": criteria.span_operation}


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
