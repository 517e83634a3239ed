"""The comparison against a baseline in every report format: JSON (``comparison`` in the
report, see ``report.schema.json``), the terminal table and Markdown. HTML is
:mod:`trace_analysis.reports.comparison_html`. The wording is shared from here."""

from __future__ import annotations

from typing import Any

from trace_analysis.analyses.compare import (
    Comparison,
    Contribution,
    OperationChange,
    SideStats,
)
from trace_analysis.analyses.significance import relative
from trace_analysis.model.results import Source
from trace_analysis.reports.wording import duration, iso, ms, percent

# the columns of a change, (header, SideStats field): "path self" is the mean self time per call
# on the trace's critical path
STAT_COLUMNS = (
    ("p50", "p50_us"),
    ("p95", "p95_us"),
    ("p99", "p99_us"),
    ("path self", "path_self_us"),
)
PATH_SELF_NOTE = "path self: mean time per call on the critical path, not in a child"
MAX_LISTED = 10  # operations listed per group in table/markdown (new, gone, too few samples)
LATENCY_TEST = "Mann-Whitney U, two-sided"
ERRORS_TEST = "Fisher's exact test, two-sided"


# --- wording shared by table, Markdown and HTML -------------------------------------------


def side_text(source: Source) -> str:
    """``file before.json`` / ``api-gateway in Jaeger at URL, 2026-...Z..2026-...Z``."""
    if source.kind == "file":
        return f"file {source.input_path}"
    where = f"{source.service} in Jaeger at {source.jaeger_url}"
    return f"{where}, {iso(source.start_us)}..{iso(source.end_us)}"


def headline(comparison: Comparison) -> str:
    """``Compared with the baseline: 2 regressed``; when nothing could be judged, that first:
    "0 regressed" against an empty baseline would read as a pass."""
    problem = comparison.unjudged()
    if problem:
        return f"Compared with the baseline: NOTHING JUDGED, {problem}"
    return f"Compared with the baseline: {comparison.count('regressed')} regressed"


def criteria_line(comparison: Comparison) -> str:
    c = comparison.criteria
    return (
        f"A latency change counts when p50 or p95 moves by more than {percent(c.min_change)} "
        f"and {c.min_change_us / 1000:g} ms and a two-sided Mann-Whitney U test gives "
        f"p < {c.alpha:g}; an error-rate change when a two-sided Fisher's exact test gives "
        f"p < {c.alpha:g}; operations with fewer than {c.min_samples} spans on a side are not "
        "judged."
    )


def counts_line(comparison: Comparison) -> str:
    parts = [
        f"{comparison.count('regressed')} operations regressed",
        f"{comparison.count('improved')} improved",
        f"{comparison.count('unchanged')} unchanged",
    ]
    for verdict, label in (
        ("too_few_samples", "not judged (too few samples)"),
        ("new", "new"),
        ("gone", "gone"),
    ):
        if comparison.count(verdict):
            parts.append(f"{comparison.count(verdict)} {label}")
    return ", ".join(parts)


def sides_line(comparison: Comparison) -> str:
    return (
        f"baseline {comparison.baseline_traces:,} traces ({comparison.baseline_spans:,} spans), "
        f"candidate {comparison.candidate_traces:,} traces ({comparison.candidate_spans:,} spans)"
    )


def signed(us: float) -> str:
    """``+18.1 ms``, ``-0.3 ms``; what rounds to zero gets no minus sign."""
    text = duration(abs(us))
    return ("-" if us < 0 and any(d in "123456789" for d in text) else "+") + text


def signed_percent(rel: float | None) -> str:
    """``+37%``, ``-12%``; growth of tenfold or more as a factor, ``113x`` (``+11,187%`` is long
    to read and to fit in a table cell)."""
    if rel is None:
        return "new"
    if rel >= 9:
        return f"{1 + rel:,.0f}x"
    text = percent(abs(rel))
    return ("-" if rel < 0 and any(d in "123456789" for d in text) else "+") + text


def change_text(before: float, after: float) -> str:
    """``12.0 ms → 30.1 ms (+18.1 ms, +151%)``."""
    return (
        f"{duration(before)} → {duration(after)} "
        f"({signed(after - before)}, {signed_percent(relative(before, after))})"
    )


def reason_text(change: OperationChange) -> str:
    return {"both": "latency and errors"}.get(change.reason or "", change.reason or "")


def attribution_text(change: OperationChange) -> str | None:
    """``p50 +15.0 ms (mean +15.2 ms), of which inventory-service SELECT stock +15.0 ms (98%),
    ...``: the operations whose critical-path self time per request grew the most, each with
    its share of the growth (what grew, summed; never over 100%). When other operations got
    faster, the mean says so: ``(mean +15.2 ms: +16.0 ms grown, -0.8 ms shrunk)``."""
    b, c, total, growth = change.baseline, change.candidate, change.mean_change_us, change.growth_us
    if not change.attribution or b is None or c is None or total is None or growth is None:
        return None
    mean = f"mean {signed(total)}"
    if signed(growth) != signed(total):  # shrinkage that shows in the numbers
        mean += f": {signed(growth)} grown, {signed(total - growth)} shrunk"
    parts = [_contribution_text(change, x, growth) for x in change.attribution]
    return f"p50 {signed(c.p50_us - b.p50_us)} ({mean}), of which " + ", ".join(parts)


def _contribution_text(change: OperationChange, contribution: Contribution, growth: float) -> str:
    share = f" ({percent(contribution.change_us, growth)})" if growth > 0 else ""
    own = (contribution.service, contribution.operation) == (change.service, change.operation)
    name = "its own time" if own else f"{contribution.service} {contribution.operation}"
    return f"{name} {signed(contribution.change_us)}{share}"


def errors_text(side: SideStats | None) -> str:
    if side is None:
        return "-"
    return f"{side.errors:,} ({percent(side.errors, side.count)})"


# --- JSON ----------------------------------------------------------------------------------


def comparison_dict(comparison: Comparison) -> dict[str, Any]:
    """The ``comparison`` object of the JSON report (``report.schema.json``)."""
    source = comparison.baseline_source
    c = comparison.criteria
    return {
        "baseline": {
            "source": {
                "kind": source.kind,
                "input": source.input_path,
                "service": source.service,
                "operation": source.operation,
                "start": iso(source.start_us),
                "end": iso(source.end_us),
                "queries": source.queries,
            },
            "traces": comparison.baseline_traces,
            "spans": comparison.baseline_spans,
        },
        "candidate": {
            "traces": comparison.candidate_traces,
            "spans": comparison.candidate_spans,
        },
        "criteria": {
            "min_change": c.min_change,
            "min_change_ms": ms(c.min_change_us),
            "min_samples": c.min_samples,
            "alpha": c.alpha,
            "latency_test": LATENCY_TEST,
            "errors_test": ERRORS_TEST,
        },
        "counts": {
            verdict: comparison.count(verdict)
            for verdict in ("regressed", "improved", "unchanged", "too_few_samples", "new", "gone")
        },
        "operations": [_operation(op) for op in comparison.operations],
        "new_errors": [
            {
                "service": e.service,
                "operation": e.operation,
                "message": e.message,
                "count": e.count,
            }
            for e in comparison.new_errors
        ],
        "warnings": list(comparison.warnings),
    }


def _operation(op: OperationChange) -> dict[str, Any]:
    return {
        "service": op.service,
        "operation": op.operation,
        "entry": op.entry,
        "verdict": op.verdict,
        "regressed": op.regressed,
        "reason": op.reason,
        "latency": op.latency,
        "errors": op.errors,
        "latency_p_value": _p(op.latency_p),
        "errors_p_value": _p(op.errors_p),
        "baseline": _side(op.baseline),
        "candidate": _side(op.candidate),
        "change": _change(op.baseline, op.candidate),
        "attribution": [
            {
                "service": x.service,
                "operation": x.operation,
                "baseline_ms": ms(x.baseline_us),
                "candidate_ms": ms(x.candidate_us),
                "change_ms": ms(x.change_us),
            }
            for x in op.attribution
        ],
    }


def _side(side: SideStats | None) -> dict[str, Any] | None:
    if side is None:
        return None
    return {
        "count": side.count,
        "errors": side.errors,
        "error_rate": round(side.error_rate, 4),
        "p50_ms": ms(side.p50_us),
        "p95_ms": ms(side.p95_us),
        "p99_ms": ms(side.p99_us),
        "critical_path_self_ms": ms(side.path_self_us),
        "requests": side.requests,
    }


def _change(before: SideStats | None, after: SideStats | None) -> dict[str, Any] | None:
    if before is None or after is None:
        return None
    result: dict[str, Any] = {}
    for name in ("p50", "p95", "p99"):
        b, a = getattr(before, f"{name}_us"), getattr(after, f"{name}_us")
        result[f"{name}_ms"] = ms(a - b)
        result[f"{name}_relative"] = _round(relative(b, a))
    result["error_rate"] = round(after.error_rate - before.error_rate, 4)
    result["error_rate_relative"] = _round(relative(before.error_rate, after.error_rate))
    result["critical_path_self_ms"] = ms(after.path_self_us - before.path_self_us)
    result["critical_path_self_relative"] = _round(
        relative(before.path_self_us, after.path_self_us)
    )
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _p(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.3g}")


# --- Markdown ------------------------------------------------------------------------------


def render_comparison_markdown(comparison: Comparison, candidate: str) -> str:
    from trace_analysis.reports.markdown import _cell

    regressed = [op for op in comparison.operations if op.verdict == "regressed"]
    improved = [op for op in comparison.operations if op.verdict == "improved"]
    lines = [
        f"## {headline(comparison)}",
        "",
        f"Candidate: {_cell(candidate)}. Baseline: {_cell(side_text(comparison.baseline_source))}.",
        "",
        f"**{counts_line(comparison)}**; {sides_line(comparison)}.",
        "",
        f"_{_cell(criteria_line(comparison))}_",
        "",
    ]
    for title, group in (("Regressions", regressed), ("Improvements", improved)):
        if not group:
            continue
        lines += [
            f"### {title}",
            "",
            "| service | operation | why | spans | "
            + " | ".join(name for name, _ in STAT_COLUMNS)
            + " | errors |",
            "| --- | --- | --- | ---: | " + "---: | " * len(STAT_COLUMNS) + "---: |",
        ]
        for op in group:
            b, c = op.baseline, op.candidate
            assert b is not None and c is not None
            cells = [
                op.service,
                op.operation,
                reason_text(op),
                f"{b.count:,} → {c.count:,}",
                *(change_text(getattr(b, f), getattr(c, f)) for _, f in STAT_COLUMNS),
                f"{errors_text(b)} → {errors_text(c)}",
            ]
            lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
        lines += ["", f"_{PATH_SELF_NOTE}._", ""]
        for op in group:
            text = attribution_text(op)
            if text:
                lines.append(f"- **{_cell(op.service)} {_cell(op.operation)}**: {_cell(text)}")
        lines.append("")
    for title, items in listed_groups(comparison):
        lines += [f"### {title}", ""]
        lines += [f"- {_cell(item)}" for item in items]
        lines.append("")
    if comparison.new_errors:
        lines += ["### Error messages seen only in the candidate", ""]
        lines += [
            f"- {_cell(e.service)} {_cell(e.operation)}: `{_cell(e.message)}` ({e.count:,}x)"
            for e in comparison.new_errors[:MAX_LISTED]
        ]
        lines.append("")
    for warning in comparison.warnings:
        lines.append(f"> **warning**: {_cell(warning)}")
    return "\n".join(lines).rstrip("\n") + "\n"


LISTED = (
    ("new", "New operations (not in the baseline)"),
    ("gone", "Gone operations (not in the candidate)"),
    ("too_few_samples", "Not judged, too few samples"),
)


def listed_groups(comparison: Comparison) -> list[tuple[str, list[str]]]:
    """The operations listed, not tabled (new, gone, not judged): a title and at most
    :data:`MAX_LISTED` lines per group that has any, then how many more there are."""
    groups = []
    for verdict, title in LISTED:
        group = [op for op in comparison.operations if op.verdict == verdict]
        if group:
            items = [listed_text(op) for op in group[:MAX_LISTED]]
            if len(group) > MAX_LISTED:
                items.append(f"... and {len(group) - MAX_LISTED} more (--format json lists all)")
            groups.append((title, items))
    return groups


def listed_text(op: OperationChange) -> str:
    """One line for a new, gone or not judged operation."""
    b, c = op.baseline, op.candidate
    counts = f"{b.count if b else 0:,} → {c.count if c else 0:,} spans"
    if c is not None and op.verdict != "gone":
        counts += f", p50 {duration(c.p50_us)}, errors {errors_text(c)}"
    return f"{op.service} {op.operation} ({counts})"
