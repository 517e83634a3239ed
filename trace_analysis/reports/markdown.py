"""The Markdown report, sized for a CI job summary (``>> $GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

from trace_analysis.model.results import GroupStats, Report
from trace_analysis.reports import wording


def render_markdown(report: Report, top: int) -> str:
    latency = report.summary.latency
    overall = wording.unit_for(latency.p99_us)
    lines = [
        f"## Trace analysis: {len(report.traces)} flagged",
        "",
        f"Traces {_cell(wording.criteria_text(report))}: {_cell(wording.source_text(report))}.",
        "",
        f"**{wording.headline(report)}**. "
        f"Trace latency p50 {overall(latency.p50_us)}, p95 {overall(latency.p95_us)}, "
        f"p99 {overall(latency.p99_us)}.",
    ]
    if report.truncated:
        lines += ["", "> Stopped at `--limit`: more traces were there."]
    lines += [""]
    if not report.traces:
        lines += [wording.none_flagged_text(report), ""]
    else:
        lines += [
            "### Flagged traces, slowest first",
            "",
            "| trace | latency | flags | culprit | first failure | notes |",
            "| --- | ---: | --- | --- | --- | --- |",
        ]
        unit = wording.trace_unit(*report.traces[:top])
        for trace in report.traces[:top]:
            flags = ", ".join(
                name
                for name, on in (
                    ("slow", trace.slow),
                    ("error", trace.error),
                    ("incomplete", trace.incomplete),
                )
                if on
            )
            notes = [text for text in (wording.faults_text(trace), *trace.notes) if text]
            lines.append(
                f"| [`{trace.trace_id}`]({wording.trace_link(report, trace.trace_id)}) "
                f"| {unit(trace.latency_us)} | {flags} "
                f"| {_cell(wording.culprit_text(trace, unit) or '')} "
                f"| {_cell(wording.error_text(trace) or '')} "
                f"| {_cell('; '.join(notes))} |"
            )
        if len(report.traces) > top:
            lines.append(f"\n... and {len(report.traces) - top} more.")
        lines += ["", "<details><summary>Critical paths</summary>", ""]
        for trace in report.traces[:top]:
            steps = " → ".join(
                f"{step.service} {step.operation} ({unit(step.self_us)})"
                for step in trace.critical_path
                if step.self_us > 0
            )
            lines.append(f"- `{trace.trace_id}`: {_cell(steps)}")
        lines += ["", "</details>", ""]
    if report.summary.services:
        lines += [
            "### Per service (requests served)",
            "",
            "| service | requests | p50 | p95 | p99 | errors | error rate |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        unit = wording.groups_unit(report.summary.services)
        lines += [_group_row(group, False, unit) for group in report.summary.services]
        lines += [
            "",
            "### Operations, by p95",
            "",
            "| service | operation | spans | p50 | p95 | p99 | errors | error rate |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        ranked = sorted(report.summary.operations, key=lambda g: -g.latency.p95_us)
        unit = wording.groups_unit(ranked)
        lines += [_group_row(group, True, unit) for group in ranked]
        lines.append("")
    if report.summary.instances:
        lines += [
            f"### {wording.INSTANCES_TITLE}",
            "",
            "| service | instance | " + " | ".join(wording.INSTANCE_COLUMNS) + " |",
            "| --- | --- |" + " ---: |" * len(wording.INSTANCE_COLUMNS),
        ]
        lines += [
            "| "
            + " | ".join([_cell(s.service), _cell(s.instance), *wording.instance_cells(s)])
            + " |"
            for s in report.summary.instances
        ]
        lines.append("")
        lines += [
            f"- **stands out**: {_cell(wording.finding_text(f))}"
            for f in report.summary.instance_findings
        ]
        if report.summary.instance_findings:
            lines.append("")
    for warning in report.warnings:
        lines.append(f"> **warning**: {_cell(warning)}")
    return "\n".join(lines).rstrip("\n") + "\n"


def _group_row(group: GroupStats, with_operation: bool, unit: wording.Unit) -> str:
    cells = [_cell(group.service)]
    if with_operation:
        cells.append(_cell(group.operation or ""))
    cells += wording.group_cells(group, unit)
    return "| " + " | ".join(cells) + " |"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipe, no line break, no stray HTML)."""
    return (
        " ".join(text.split())
        .replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )
