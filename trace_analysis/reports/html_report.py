"""The HTML report: one self-contained page (inline CSS, no script, nothing fetched).

Besides the summary it draws a waterfall per flagged trace; the trace browser
(``trace_analysis.browser``) shows each trace with it. Each trace also links to its page at the
report's link base (:func:`~trace_analysis.reports.wording.trace_link`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import NamedTuple

from trace_analysis.model.results import (
    GroupStats,
    InstanceFinding,
    InstanceStats,
    Report,
    TraceResult,
    WaterfallRow,
)
from trace_analysis.reports import wording

# colour-blind-safe palette (Okabe-Ito, without black); a service keeps its colour everywhere
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")

CSS = """
:root { color-scheme: light; --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --bad: #c62828;
  --warn: #b26a00; --bg-soft: #f5f7fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  margin: 0 auto; padding: 24px 32px 48px; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; }
h3 { font-size: 15px; margin: 0 0 6px;
  font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.muted { color: var(--muted); } code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo,
  monospace; font-size: 12.5px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 130px;
  background: var(--bg-soft); }
.card b { display: block; font-size: 20px; } .card.bad b { color: var(--bad); }
.card.warn b { color: var(--warn); }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: var(--bg-soft); font-weight: 600; } td.num, th.num { text-align: right;
  font-variant-numeric: tabular-nums; white-space: nowrap; }
.tag { display: inline-block; border-radius: 4px; padding: 0 6px; font-size: 12px; font-weight: 600;
  margin-right: 4px; } .tag.slow { background: #fff1d6; color: var(--warn); }
.tag.error { background: #fde3e3; color: var(--bad); }
.tag.incomplete { background: #efe3f7; color: #6a1b9a; }
section.trace { border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
  margin: 16px 0; }
.facts { margin: 6px 0 12px; padding-left: 18px; } .facts li { margin: 2px 0; }
.wf { display: grid; grid-template-columns: minmax(260px, 34%) 1fr; font-size: 12.5px; }
.wf .label { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; padding: 1px 6px 1px 0;
  border-bottom: 1px solid #eef0f4; }
.wf .track { position: relative; border-bottom: 1px solid #eef0f4; min-height: 20px; }
.wf .bar { position: absolute; top: 4px; height: 12px; border-radius: 2px; min-width: 2px;
  opacity: .55; }
.wf .bar.cp { opacity: 1; outline: 2px solid #1d2330; outline-offset: -1px; }
.wf .bar.err { background-image: repeating-linear-gradient(45deg, transparent 0 4px,
  rgba(198,40,40,.9) 4px 7px) !important; }
.wf .mark { position: absolute; top: 2px; width: 2px; height: 16px; margin-left: -1px;
  background: var(--fg); } .wf .mark.exc { background: var(--bad); width: 3px; }
.wf .dur { position: absolute; top: 2px; font-size: 11px; color: var(--muted);
  white-space: nowrap; } .wf .dur.in { top: 3px; line-height: 14px; padding: 0 4px;
  color: var(--fg); background: rgba(255,255,255,.85); border-radius: 3px; }
.wf .axis { grid-column: 2; position: relative; height: 18px; border-bottom: 1px solid var(--line);
  font-size: 11px; color: var(--muted); }
.wf .axis span { position: absolute; white-space: nowrap; }
.legend span { display: inline-block; margin-right: 14px; } .legend i { display: inline-block;
  width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
a { color: #0b57d0; }
"""


def page_head(title: str) -> list[str]:
    """The page's opening, its styles and its title as the first heading."""
    return [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]


def render_html(report: Report, top: int, explained: bool = False) -> str:
    """The report as one page; ``explained``: the traces ``--trace`` asked for, whether or
    not they are flagged."""
    colours = _colours(report)
    shown = report.traces[:top]
    if explained:
        title = f"Trace {', '.join(t.trace_id for t in report.traces)}"
        scope = wording.source_text(report)
    else:
        title = f"Trace analysis: {len(report.traces)} flagged"
        scope = f"Traces {wording.criteria_text(report)}: {wording.source_text(report)}"
    parts = [
        *page_head(title),
        f'<div class="muted">{escape(scope)}. Generated {escape(report.generated_at)}.</div>',
        _cards(report),
    ]
    if report.truncated:
        parts.append('<p class="muted">Stopped at --limit: more traces were there.</p>')
    parts += [f'<p class="muted">warning: {escape(w)}</p>' for w in report.warnings]
    if not shown:
        if not report.summary.traces:  # nothing judged: said first, as in the other formats
            parts.append(f"<p><b>{escape(wording.headline(report))}</b></p>")
        parts.append(f"<p><b>{escape(wording.none_flagged_text(report))}</b></p>")
    else:
        parts.append("<h2>Traces</h2>" if explained else "<h2>Flagged traces, slowest first</h2>")
        parts.append(_flagged_table(report, shown))
        if len(report.traces) > len(shown):
            more = len(report.traces) - len(shown)
            parts.append(f'<p class="muted">... and {more} more (raise --top).</p>')
    if report.summary.services:
        parts.append("<h2>Per service (requests served)</h2>")
        parts.append(_groups_table(report.summary.services, with_operation=False))
    if report.summary.instances:
        parts.append(f"<h2>{escape(wording.INSTANCES_TITLE)}</h2>")
        parts.append(instances_html(report.summary.instances, report.summary.instance_findings))
    if shown:
        parts.append("<h2>Waterfalls</h2>")
        parts.append(_legend(colours))
        parts += [_trace_section(report, trace, colours) for trace in shown]
    if report.summary.operations:
        parts.append("<h2>Operations, by p95</h2>")
        ranked = sorted(report.summary.operations, key=lambda g: -g.latency.p95_us)
        parts.append(_groups_table(ranked, with_operation=True))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _cards(report: Report) -> str:
    s = report.summary
    overall = wording.unit_for(s.latency.p99_us)
    cards = [
        ("", f"{s.traces:,}", f"traces ({s.spans:,} spans)"),
        ("warn" if s.slow else "", f"{s.slow:,}", f"slow ({wording.percent(s.slow, s.traces)})"),
        (
            "bad" if s.errors else "",
            f"{s.errors:,}",
            f"failing ({wording.percent(s.errors, s.traces)})",
        ),
        ("", overall(s.latency.p50_us), "latency p50"),
        ("", overall(s.latency.p95_us), "latency p95"),
        ("", overall(s.latency.p99_us), "latency p99"),
    ]
    body = "".join(
        f'<div class="card {cls}"><b>{escape(value)}</b>{escape(label)}</div>'
        for cls, value, label in cards
    )
    return f'<div class="cards" title="{escape(wording.headline(report))}">{body}</div>'


def _flagged_table(report: Report, traces: list[TraceResult]) -> str:
    rows = []
    unit = wording.trace_unit(*traces)
    for trace in traces:
        rows.append(
            "<tr>"
            f'<td><a class="mono" href="#trace-{escape(trace.trace_id)}">'
            f"{escape(trace.trace_id)}</a><br>"
            f'<a href="{escape(wording.trace_link(report, trace.trace_id))}">'
            "open the trace</a></td>"
            f'<td class="num">{unit(trace.latency_us)}</td>'
            f"<td>{tags(trace)}</td>"
            f"<td>{why(trace, unit)}</td>"
            "</tr>"
        )
    return (
        '<table><tr><th>trace</th><th class="num">latency</th><th>flags</th><th>why</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def why(trace: TraceResult, unit: wording.Unit = wording.MS) -> str:
    """Why a trace is flagged, one line each: its culprit, first failure and faults."""
    return "<br>".join(
        f"<b>{label}</b> {escape(text)}"
        for label, text in (
            ("culprit", wording.culprit_text(trace, unit)),
            ("failed", wording.error_text(trace)),
            ("fault", wording.faults_text(trace)),
        )
        if text
    )


def tags(trace: TraceResult) -> str:
    """The trace's flags (slow, error, incomplete) as tags."""
    names = [("slow", trace.slow), ("error", trace.error), ("incomplete", trace.incomplete)]
    return "".join(f'<span class="tag {name}">{name}</span>' for name, on in names if on)


def _trace_section(report: Report, trace: TraceResult, colours: dict[str, str]) -> str:
    unit = wording.trace_unit(trace)
    facts = [
        f"latency {unit(trace.latency_us)} (root span {escape(trace.root_service)} "
        f"{escape(trace.root_operation)}), end to end {unit(trace.end_to_end_us)}, "
        f"{trace.span_count} spans"
    ]
    facts += [
        escape(f"{label}: {text}")
        for label, text in (
            ("culprit", wording.culprit_text(trace, unit, always=bool(report.source.trace_ids))),
            ("first failure", wording.error_text(trace, spans_after=True)),
            ("faults", wording.faults_text(trace)),
        )
        if text
    ]
    facts += [escape(note) for note in trace.notes]
    items = "".join(f"<li>{fact}</li>" for fact in facts)
    link = escape(wording.trace_link(report, trace.trace_id))
    return (
        f'<section class="trace" id="trace-{escape(trace.trace_id)}">'
        f"<h3>{escape(trace.trace_id)} {tags(trace)}</h3>"
        f'<a href="{link}">{link}</a>'
        f'<ul class="facts">{items}</ul>'
        f"{_waterfall(trace, colours)}</section>"
    )


class SpanView(NamedTuple):
    """What a waterfall row opens on (the trace browser's page): its HTML, whether it is
    open from the start, and its events as marks on the bar: (µs from the trace's start,
    whether it is an exception)."""

    body: str
    open: bool
    marks: list[tuple[int, bool]]


def _waterfall(
    trace: TraceResult,
    colours: dict[str, str],
    detail: Callable[[WaterfallRow], SpanView] | None = None,
) -> str:
    """The trace's bars on one time axis; with ``detail``, each row is a ``<details>`` that
    opens on what ``detail(row)`` gives."""
    rows = trace.waterfall or []
    if not rows:
        return ""
    total = max(trace.end_to_end_us, max(r.start_us + r.duration_us for r in rows), 1)
    unit = wording.unit_for(total)
    shift = {0: "0", 100: "-100%"}
    ticks = "".join(
        f'<span style="left:{pct}%;transform:translateX({shift.get(pct, "-50%")})">'
        f"{unit(total * pct / 100)}</span>"
        for pct in (0, 25, 50, 75, 100)
    )
    cells = ['<div class="label"></div>', f'<div class="axis">{ticks}</div>']
    if detail is not None:
        opened = []
        for row in rows:
            view = detail(row)
            opened.append(
                f'<details class="span"{" open" if view.open else ""}><summary>'
                f"{_waterfall_row(row, total, colours, unit, view.marks)}</summary>"
                f"{view.body}</details>"
            )
        head = f'<div class="head">{"".join(cells)}</div>'
        return f'<div class="wf spans">{head}{"".join(opened)}</div>'
    for row in rows:
        cells.append(_waterfall_row(row, total, colours, unit))
    return f'<div class="wf">{"".join(cells)}</div>'


def _waterfall_row(
    row: WaterfallRow,
    total: int,
    colours: dict[str, str],
    unit: wording.Unit,
    marks: Sequence[tuple[int, bool]] = (),
) -> str:
    left = 100 * row.start_us / total
    width = 100 * row.duration_us / total
    classes = "bar" + (" cp" if row.on_critical_path else "") + (" err" if row.error else "")
    title = escape(
        f"{row.service} {row.operation}: {unit(row.duration_us)} at +{unit(row.start_us)}"
        + (", on the critical path" if row.on_critical_path else "")
        + (", failed" if row.error else "")
    )
    label_pad = 4 + 12 * min(row.depth, 20)
    label = (
        f'<div class="label" style="padding-left:{label_pad}px" title="{title}">'
        f'<span style="color:{colours.get(row.service, "#555")}">&#9632;</span> '
        f"{escape(row.service)} <b>{escape(row.operation)}</b></div>"
    )
    # the duration after the bar, else before it, else (a bar from start to end) inside it
    dur = "dur"
    if left + width < 85:
        where = f"left:calc({left + width:.3f}% + 4px)"
    elif left >= 10:
        where = f"right:calc({100 - left:.3f}% + 4px)"
    else:
        where, dur = f"left:calc({left:.3f}% + 4px)", "dur in"
    track = (
        f'<div class="track" title="{title}">'
        f'<div class="{classes}" style="left:{left:.3f}%;width:{width:.3f}%;'
        f'background-color:{colours.get(row.service, "#888")}"></div>'
        + "".join(
            f'<i class="mark{" exc" if bad else ""}" style="left:{100 * at / total:.3f}%"></i>'
            for at, bad in marks
        )
        + f'<span class="{dur}" style="{where}">{unit(row.duration_us)}</span></div>'
    )
    return label + track


def _legend(colours: dict[str, str], marks: bool = False) -> str:
    items = "".join(
        f'<span><i style="background:{colour}"></i>{escape(service)}</span>'
        for service, colour in colours.items()
    )
    ticks = "<span>ticks: events (red: an exception)</span>" if marks else ""
    return (
        f'<div class="legend muted">{items}<span>outlined: on the critical path</span>'
        f"<span>striped: failed</span>{ticks}</div>"
    )


def _groups_table(groups: list[GroupStats], with_operation: bool) -> str:
    head = "<tr><th>service</th>" + ("<th>operation</th>" if with_operation else "")
    head += "".join(
        f'<th class="num">{name}</th>'
        for name in ("spans" if with_operation else "requests", "p50", "p95", "p99", "errors")
    )
    head += '<th class="num">error rate</th></tr>'
    rows = []
    unit = wording.groups_unit(groups)
    for group in groups:
        cells = f"<td>{escape(group.service)}</td>"
        if with_operation:
            cells += f"<td>{escape(group.operation or '')}</td>"
        values = wording.group_cells(group, unit)
        cells += "".join(f'<td class="num">{value}</td>' for value in values)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def instances_html(
    instances: list[InstanceStats],
    findings: list[InstanceFinding],
    link: Callable[[InstanceStats], str] | None = None,
) -> str:
    """The per-instance table, an outlier's row in bold, then each finding in a line (also
    the trace browser's, on its service map); ``link``: where each instance id links to."""
    outliers = {(f.service, f.instance) for f in findings}
    head = "<tr><th>service</th><th>instance</th>" + "".join(
        f'<th class="num">{name}</th>' for name in wording.INSTANCE_COLUMNS
    )
    rows = []
    for stats in instances:
        name = escape(stats.instance)
        if link is not None:
            name = f'<a href="{escape(link(stats))}">{name}</a>'
        cells = f"<td>{escape(stats.service)}</td><td>{name}</td>"
        cells += "".join(f'<td class="num">{v}</td>' for v in wording.instance_cells(stats))
        bold = ' style="font-weight:bold"' if (stats.service, stats.instance) in outliers else ""
        rows.append(f"<tr{bold}>{cells}</tr>")
    lines = "".join(
        f'<p><b style="color:var(--bad)">stands out</b> {escape(wording.finding_text(f))}</p>'
        for f in findings
    )
    return f"<table>{head}</tr>{''.join(rows)}</table>{lines}"


def _colours(report: Report) -> dict[str, str]:
    return _colours_of(
        {g.service for g in report.summary.services}
        | {s for t in report.traces for s in t.services}
    )


def _colours_of(services: Iterable[str]) -> dict[str, str]:
    """A colour per service, by name order (the same service, the same colour)."""
    return {service: PALETTE[i % len(PALETTE)] for i, service in enumerate(sorted(services))}
