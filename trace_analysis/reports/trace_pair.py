"""Two traces compared on one page (``/trace/<a>...<b>``): both traces' headers, what got
slower, then every span of either with its duration in each, matched by
:mod:`trace_analysis.analyses.pair`. Escaped, no script."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from trace_analysis.analyses.pair import SpanPair, pair_spans, slower
from trace_analysis.model.results import TraceResult, WaterfallRow
from trace_analysis.reports import wording
from trace_analysis.reports.html_report import page_head, tags

CSS = """
tr.slower td { background: #fdecec; } tr.faster td { background: #eaf6ee; }
tr.only td { background: #f3f0fa; } td.change.bad { color: var(--bad); font-weight: 600; }
td.name { white-space: nowrap; }
"""


def render_trace_pair(a: TraceResult, b: TraceResult, nav: str = "") -> str:
    """The page (see the module doc)."""
    pairs = pair_spans(a, b)
    unit = wording.trace_unit(a, b)
    title = f"Trace {a.trace_id} ... {b.trace_id}"
    parts = [*page_head("Two traces compared")[:-1], f"<style>{CSS}</style>", nav]
    parts.append("<h1>Two traces compared</h1>")
    parts.append(f'<div class="mono muted">{escape(title)}</div>')
    parts.append(_heads(a, b, unit))
    grown = slower(pairs)
    only_a = sum(pair.b is None for pair in pairs)
    only_b = sum(pair.a is None for pair in pairs)
    items = [
        f"B took {_change(b.latency_us - a.latency_us, a.latency_us, unit)} "
        f"({unit(a.latency_us)} in A, {unit(b.latency_us)} in B)",
        f"{len(pairs) - only_a - only_b} span(s) in both, {only_a} only in A, {only_b} only in B",
    ]
    items += [
        f"slower in B: {pair.service} {pair.operation}, "
        f"{_change(pair.self_change_us or 0, pair.a_self_us, unit)} of its own time"
        for pair in grown[:5]
    ]
    parts.append(
        '<ul class="facts">' + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"
    )
    parts.append("<h2>Spans</h2>")
    parts.append(_table(pairs, {id(pair) for pair in grown}))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _heads(a: TraceResult, b: TraceResult, unit: wording.Unit) -> str:
    rows = []
    for label, trace in (("A", a), ("B", b)):
        link = escape(f"/trace/{quote(trace.trace_id, safe='')}")
        rows.append(
            f"<tr><td><b>{label}</b></td>"
            f'<td><a class="mono" href="{link}">{escape(trace.trace_id)}</a></td>'
            f"<td>{escape(trace.root_service)} <b>{escape(trace.root_operation)}</b></td>"
            f'<td class="mono">{escape(wording.iso(trace.start_us) or "")}</td>'
            f'<td class="num">{unit(trace.latency_us)}</td>'
            f'<td class="num">{trace.span_count}</td><td>{tags(trace) or "ok"}</td></tr>'
        )
    head = (
        '<tr><th></th><th>trace</th><th>root</th><th>started (UTC)</th><th class="num">'
        'duration</th><th class="num">spans</th><th>status</th></tr>'
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _table(pairs: list[SpanPair], grown: set[int]) -> str:
    rows = []
    for pair in pairs:
        # each row in the unit that keeps its digits: a 40 µs statement is not "0.0 ms"
        unit = wording.unit_for(*(row.duration_us for row in (pair.a, pair.b) if row))
        if pair.a is None or pair.b is None:
            css, change = "only", "only in " + ("B" if pair.a is None else "A")
        else:
            delta = pair.change_us or 0
            shrunk = -(pair.self_change_us or 0) >= max(1000, 0.2 * pair.a.duration_us)
            css = "slower" if id(pair) in grown else "faster" if shrunk else ""
            change = _change(delta, pair.a.duration_us, unit)
        own = "" if pair.self_change_us is None else _change(pair.self_change_us, 0, unit)
        cells = [
            f'<td class="name" style="padding-left:{8 + 12 * min(pair.depth, 20)}px">'
            f"{escape(pair.service)} <b>{escape(pair.operation)}</b></td>",
            *(_duration(row, unit) for row in (pair.a, pair.b)),
            f'<td class="num">{escape(change)}</td>',
            f'<td class="num change{" bad" if css == "slower" else ""}">{escape(own)}</td>',
        ]
        rows.append(f'<tr class="{css}">{"".join(cells)}</tr>')
    head = (
        '<tr><th>span (service operation)</th><th class="num">A</th><th class="num">B</th>'
        '<th class="num">change</th><th class="num">own time change</th></tr>'
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _duration(row: WaterfallRow | None, unit: wording.Unit) -> str:
    if row is None:
        return '<td class="num muted">-</td>'
    failed = ' <span class="tag error">error</span>' if row.error else ""
    return f'<td class="num">{unit(row.duration_us)}{failed}</td>'


def _change(delta_us: int, before_us: int, unit: wording.Unit) -> str:
    sign = "+" if delta_us >= 0 else "-"
    text = f"{sign}{unit(abs(delta_us))}"
    if before_us > 0:
        text += f" ({sign}{abs(delta_us) / before_us:.0%})"
    return text
