"""The comparison against a baseline as an HTML page, in the style of the HTML report (and,
with a threshold or --errors-only, followed by that report for the candidate)."""

from __future__ import annotations

from html import escape

from trace_analysis.analyses.compare import Comparison, OperationChange
from trace_analysis.model.results import Report
from trace_analysis.reports import comparison as compared
from trace_analysis.reports.html_report import page_head, render_html
from trace_analysis.reports.wording import source_text


def render_comparison_html(report: Report, comparison: Comparison, top: int, traces: bool) -> str:
    regressed = [op for op in comparison.operations if op.verdict == "regressed"]
    improved = [op for op in comparison.operations if op.verdict == "improved"]
    title = compared.headline(comparison)
    parts = [
        *page_head(title),
        f'<div class="muted">Candidate: {escape(source_text(report))}.<br>'
        f"Baseline: {escape(compared.side_text(comparison.baseline_source))}.<br>"
        f"{escape(compared.sides_line(comparison))}. "
        f"Generated {escape(report.generated_at)}.</div>",
        f"<p><b>{escape(compared.counts_line(comparison))}</b></p>",
        f'<p class="muted">{escape(compared.criteria_line(comparison))}</p>',
    ]
    parts += [f'<p class="muted">warning: {escape(w)}</p>' for w in comparison.warnings]
    for heading, group in (("Regressed", regressed), ("Improved", improved)):
        if group:
            parts.append(f"<h2>{heading}</h2>")
            parts.append(_changes_table(group))
            parts.append(f'<p class="muted">{escape(compared.PATH_SELF_NOTE)}</p>')
            where = [
                f"<li>{escape(op.service)} <b>{escape(op.operation)}</b>: {escape(text)}</li>"
                for op in group
                if (text := compared.attribution_text(op))
            ]
            if where:
                parts.append(
                    "<p><b>Where the time went</b>: critical-path self time per request</p>"
                    f"<ul>{''.join(where)}</ul>"
                )
    for heading, listed in compared.listed_groups(comparison):
        items = "".join(f"<li>{escape(item)}</li>" for item in listed)
        parts.append(f"<h2>{heading}</h2><ul>{items}</ul>")
    if comparison.new_errors:
        items = "".join(
            f"<li>{escape(e.service)} {escape(e.operation)}: <code>{escape(e.message)}</code> "
            f"({e.count:,}x)</li>"
            for e in comparison.new_errors[: compared.MAX_LISTED]
        )
        parts.append(f"<h2>Error messages seen only in the candidate</h2><ul>{items}</ul>")
    if traces:
        # the flagged-trace report's own page, from its body on
        page = render_html(report, top)
        body = page[page.index("<body>") + len("<body>") : page.rindex("</body>")]
        parts.append(f"<hr>{body}")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _changes_table(group: list[OperationChange]) -> str:
    head = (
        '<tr><th>service</th><th>operation</th><th>why</th><th class="num">spans</th>'
        + "".join(f'<th class="num">{name}</th>' for name, _ in compared.STAT_COLUMNS)
        + '<th class="num">errors</th></tr>'
    )
    rows = []
    for op in group:
        b, c = op.baseline, op.candidate
        assert b is not None and c is not None
        cells = [
            f"<td>{escape(op.service)}</td>",
            f"<td>{escape(op.operation)}</td>",
            f"<td>{escape(compared.reason_text(op))}</td>",
            f'<td class="num">{b.count:,} → {c.count:,}</td>',
            *(
                _change_cell(getattr(b, field), getattr(c, field))
                for _, field in compared.STAT_COLUMNS
            ),
            f'<td class="num">{escape(compared.errors_text(b))} → '
            f"{escape(compared.errors_text(c))}</td>",
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _change_cell(before: float, after: float) -> str:
    values, _, change = compared.change_text(before, after).partition(" (")
    return f'<td class="num">{escape(values)}<br><span class="muted">({escape(change)}</span></td>'
