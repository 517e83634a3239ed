"""The ``--trace`` view: each trace as a waterfall on a common time axis, then why it went as it
did (culprit, first failure, faults, notes). Drawn in the terminal with rich, or as text in a
Markdown code block; the JSON and HTML reports carry the same rows."""

from __future__ import annotations

import math

from rich.console import Console
from rich.text import Text

from trace_analysis.model.results import Report, TraceResult, WaterfallRow
from trace_analysis.reports.table import flags_text
from trace_analysis.reports.wording import (
    Unit,
    error_text,
    faults_text,
    iso,
    origin_text,
    percent,
    unit_for,
)

BAR_WIDTH = 40  # characters for the whole trace's time
LABEL_WIDTH = 52
ON_PATH, OFF_PATH = "█", "░"


def render_trace_table(report: Report, console: Console) -> None:
    """Print every explained trace of ``report`` (see the module doc)."""
    for index, trace in enumerate(report.traces):
        if index:
            console.print()
        for line in trace_lines(report, trace):
            console.print(line, overflow="ignore", crop=False, soft_wrap=True)
    for warning in report.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))


def render_trace_markdown(report: Report) -> str:
    """Each trace as a heading (span text escaped as in a table cell: no HTML, no line break)
    and its view in a code block, whose lines never start with span text (so none closes it)."""
    from trace_analysis.reports.markdown import _cell

    parts = []
    for trace in report.traces:
        lines = [line.plain for line in trace_lines(report, trace)]
        header, body = lines[0], lines[1:]
        parts.append(f"### {_cell(header)}\n\n```text\n" + "\n".join(body) + "\n```\n")
    parts.extend(f"> warning: {warning}\n" for warning in report.warnings)
    return "\n".join(parts)


def trace_lines(report: Report, trace: TraceResult) -> list[Text]:
    """The lines of one trace's view: header, waterfall, findings."""
    rows = trace.waterfall or []
    total = max(
        [trace.end_to_end_us, trace.latency_us, 1] + [r.start_us + r.duration_us for r in rows]
    )
    unit = unit_for(total)  # one unit for the whole view, so its numbers compare
    axis = f"0 {'.' * (BAR_WIDTH - 2 - len(unit(total)))} {unit(total)}"
    lines = [_header(trace, unit), Text(_where(report), style="dim"), Text()]
    lines.append(
        Text(
            f"  {'span (service operation)':<{LABEL_WIDTH}} {'start':>10} {'duration':>10}  "
            f"{axis}  status",
            style="bold",
        )
    )
    for row in rows:
        lines.append(_row(row, total, unit))
    if len(rows) < trace.span_count:
        lines.append(Text(f"  ... {trace.span_count - len(rows)} more spans not drawn", "dim"))
    lines.append(Text(f"  {ON_PATH} on the critical path (*)   {OFF_PATH} other spans", "dim"))
    lines.append(Text())
    lines.extend(_findings(trace, unit))
    return lines


def _header(trace: TraceResult, unit: Unit) -> Text:
    text = Text(f"Trace {trace.trace_id}", style="bold")
    text.append(f"  {trace.root_service} {trace.root_operation}  {unit(trace.latency_us)}")
    flags = flags_text(trace, "  ")
    if flags:
        text.append("  ")
        text.append_text(flags)
    return text


def _where(report: Report) -> str:
    return f"{len(report.traces)} trace(s) from {origin_text(report)}"


def _row(row: WaterfallRow, total: int, unit: Unit) -> Text:
    mark = "*" if row.on_critical_path else " "
    label = f"{'  ' * min(row.depth, 12)}{row.service} {row.operation}"
    if len(label) > LABEL_WIDTH:
        label = label[: LABEL_WIDTH - 1] + "…"
    first = min(BAR_WIDTH - 1, math.floor(row.start_us / total * BAR_WIDTH))
    last = max(first + 1, math.ceil((row.start_us + row.duration_us) / total * BAR_WIDTH))
    last = min(last, BAR_WIDTH)
    bar = " " * first + (ON_PATH if row.on_critical_path else OFF_PATH) * (last - first)
    status = "ERROR" if row.error else "ok"
    if row.http_status is not None:
        status += f" {row.http_status}"
    text = Text(f"{mark} ")
    text.append(f"{label:<{LABEL_WIDTH}}", style="bold" if row.on_critical_path else "")
    text.append(f" {'+' + unit(row.start_us):>10} {unit(row.duration_us):>10}  ")
    text.append(f"{bar:<{BAR_WIDTH}}", style="red" if row.error else "cyan")
    text.append(f"  {status}", style="bold red" if row.error else "green")
    return text


def _findings(trace: TraceResult, unit: Unit) -> list[Text]:
    lines = []
    culprit = trace.culprit
    if culprit is not None:
        lines.append(
            Text.assemble(
                ("culprit: ", "bold"),
                f"{culprit.service} {culprit.operation}: {unit(culprit.self_us)} of "
                f"self time on the critical path, {percent(culprit.share)} of the latency",
            )
        )
    origin = trace.error_origin
    if origin is not None:
        failure = error_text(trace) or ""
        if origin.http_status is not None:
            failure += f" (HTTP {origin.http_status})"
        if origin.error_spans > 1:
            failure += f"; then {origin.error_spans - 1} more failing span(s)"
        lines.append(Text.assemble(("first failure: ", "bold red"), failure))
    elif not trace.error:
        lines.append(Text.assemble(("first failure: ", "bold"), "none, no span failed"))
    faults = faults_text(trace)
    if faults:
        lines.append(Text.assemble(("faults: ", "bold cyan"), faults))
    lines.append(
        Text(
            f"{trace.span_count} spans, {len(trace.services)} services "
            f"({', '.join(trace.services)}), started {iso(trace.start_us)}, end to end "
            f"{unit(trace.end_to_end_us)}",
            style="dim",
        )
    )
    for note in trace.notes:
        lines.append(Text(f"note: {note}", style="dim"))
    return lines
