"""The default terminal report: what an on-call engineer reads first, rendered with rich."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from trace_analysis.model.results import GroupStats, Report, TraceResult
from trace_analysis.reports import wording

MAX_OPERATIONS = 8


def render_table(report: Report, console: Console, top: int) -> None:
    """Print the report: headline, flagged traces (at most ``top``), services, operations."""
    console.print(
        Text(f"Traces {wording.criteria_text(report)}: {wording.source_text(report)}", style="bold")
    )
    console.print(
        Text(wording.headline(report), style="" if report.summary.traces else "bold yellow")
    )
    if report.truncated:
        console.print(Text("stopped at --limit: more traces were there", style="yellow"))
    console.print()
    if not report.traces:
        style = "green" if report.summary.traces else "bold yellow"
        console.print(Text(wording.none_flagged_text(report), style=style))
    else:
        console.print(_flagged_table(report, top))
        if len(report.traces) > top:
            console.print(
                f"... and {len(report.traces) - top} more (raise --top, or --format json for all)"
            )
    if report.summary.services:
        console.print()
        console.print(_services_table(report.summary.services))
        console.print()
        console.print(_operations_table(report.summary.operations))
    if report.summary.instances:
        console.print()
        console.print(_instances_table(report))
        for finding in report.summary.instance_findings:
            console.print(Text.assemble(("stands out ", "bold red"), wording.finding_text(finding)))
    for warning in report.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))


def _flagged_table(report: Report, top: int) -> Table:
    table = Table(title="Flagged traces, slowest first", title_justify="left", expand=False)
    table.add_column("trace", no_wrap=True)
    table.add_column("latency", justify="right", no_wrap=True)
    table.add_column("flags", no_wrap=True)
    table.add_column("why")
    shown = report.traces[:top]
    unit = wording.trace_unit(*shown)
    for trace in shown:
        trace_cell = Text(trace.trace_id)
        trace_cell.append(f"\n{trace.root_service} {trace.root_operation}", style="dim")
        latency = Text(unit(trace.latency_us))
        if trace.judged_us is not None:  # --slow-by span: what slow was judged on
            latency.append(f"\nspan {unit(trace.judged_us)}", style="bold")
        if trace.end_to_end_us > trace.latency_us:
            latency.append(f"\ne2e {unit(trace.end_to_end_us)}", style="dim")
        table.add_row(trace_cell, latency, flags_text(trace, "\n"), _why(trace, unit))
    return table


FLAG_STYLES = {"slow": "bold yellow", "error": "bold red", "incomplete": "magenta"}


def flags_text(trace: TraceResult, separator: str) -> Text:
    """``SLOW ERROR incomplete``, styled, each word after ``separator`` but the first."""
    text = Text()
    for index, flag in enumerate(wording.flags(trace)):
        word = flag if flag == "incomplete" else flag.upper()
        text.append((separator if index else "") + word, style=FLAG_STYLES[flag])
    return text


def _why(trace: TraceResult, unit: wording.Unit) -> Group:
    lines: list[Text] = []
    culprit = wording.culprit_text(trace, unit)
    if culprit:
        lines.append(Text.assemble(("culprit ", "bold"), culprit))
    error = wording.error_text(trace)
    if error:
        lines.append(Text.assemble(("failed ", "bold red"), error))
    faults = wording.faults_text(trace)
    if faults:
        lines.append(Text(faults, style="cyan"))
    lines.extend(Text(note, style="dim") for note in trace.notes)
    return Group(*lines)


def _services_table(groups: list[GroupStats]) -> Table:
    table = Table(title="Per service (requests served)", title_justify="left")
    for name in ("service", "requests", "p50", "p95", "p99", "errors", "error rate"):
        table.add_column(name, justify="left" if name == "service" else "right")
    unit = wording.groups_unit(groups)
    for group in groups:
        p = group.latency
        table.add_row(
            group.service,
            f"{p.count:,}",
            unit(p.p50_us),
            unit(p.p95_us),
            unit(p.p99_us),
            f"{group.errors:,}",
            _rate(group),
        )
    return table


def _operations_table(groups: list[GroupStats]) -> Table:
    ranked = sorted(groups, key=lambda g: -g.latency.p95_us)[:MAX_OPERATIONS]
    title = "Operations, by p95" + (
        f" (top {MAX_OPERATIONS} of {len(groups)})" if len(groups) > MAX_OPERATIONS else ""
    )
    table = Table(title=title, title_justify="left")
    for name in ("service", "operation", "spans", "p50", "p95", "p99", "error rate"):
        table.add_column(name, justify="left" if name in ("service", "operation") else "right")
    unit = wording.groups_unit(ranked)
    for group in ranked:
        p = group.latency
        table.add_row(
            group.service,
            group.operation or "",
            f"{p.count:,}",
            unit(p.p50_us),
            unit(p.p95_us),
            unit(p.p99_us),
            _rate(group),
        )
    return table


def _instances_table(report: Report) -> Table:
    table = Table(title=wording.INSTANCES_TITLE, title_justify="left")
    for name in ("service", "instance", *wording.INSTANCE_COLUMNS):
        table.add_column(name, justify="left" if name in ("service", "instance") else "right")
    outliers = {(f.service, f.instance) for f in report.summary.instance_findings}
    for stats in report.summary.instances:
        style = "bold red" if (stats.service, stats.instance) in outliers else ""
        table.add_row(stats.service, stats.instance, *wording.instance_cells(stats), style=style)
    return table


def _rate(group: GroupStats) -> Text:
    text = wording.percent(group.errors, group.latency.count)
    return Text(text, style="red" if group.errors else "")
