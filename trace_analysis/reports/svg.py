"""Pictures the trace browser draws on the server, as inline SVG (no script, nothing fetched):
the found traces' durations over time (Jaeger's search plot) and the service map (Jaeger's
dependency graph), with call counts and error rates per edge.

Every text is escaped; each point and each service links to its page (SVG ``<a href>``).
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from trace_analysis.analyses.dependencies import ServiceMap
from trace_analysis.model.results import TraceResult
from trace_analysis.reports import wording

BAD, OK, INK, MUTED, LINE = "#c62828", "#0072B2", "#1d2330", "#5b6475", "#d9dde5"


def duration_plot(traces: list[TraceResult], width: int = 1200, height: int = 200) -> str:
    """Each trace a point: when it started (x) and how long its root took (y); failing ones
    red, a point's size by its span count, each linking to ``/trace/<id>``. "" for none."""
    if not traces:
        return ""
    left, right, top, bottom = 70, 20, 12, 28
    starts = [trace.start_us for trace in traces]
    first, last = min(starts), max(starts)
    span_x = max(last - first, 1)
    longest = max(max(trace.latency_us for trace in traces), 1)
    unit = wording.unit_for(longest)
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg class="plot" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="trace durations over time">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafbfc" '
        f'stroke="{LINE}"/>',
    ]
    for share in (0, 0.5, 1):
        y = top + 12 + (plot_h - 24) * (1 - share)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{LINE}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{MUTED}">{escape(unit(longest * share))}</text>'
        )
    for value, anchor, x in ((first, "start", left), (last, "end", left + plot_w)):
        label = (wording.iso(value) or "")[11:23]
        parts.append(
            f'<text x="{x}" y="{height - 8}" text-anchor="{anchor}" font-size="11" '
            f'fill="{MUTED}">{escape(label)} UTC</text>'
        )
    pad = 12  # points stay inside the frame
    for trace in sorted(traces, key=lambda t: t.error):  # failing ones drawn on top
        share_x = (trace.start_us - first) / span_x if last > first else 0.5
        x = left + pad + (plot_w - 2 * pad) * share_x
        y = top + pad + (plot_h - 2 * pad) * (1 - trace.latency_us / longest)
        radius = min(3 + trace.span_count**0.5, 10)
        colour = BAD if trace.error else OK
        title = (
            f"{trace.root_service} {trace.root_operation}: {unit(trace.latency_us)}, "
            f"{trace.span_count} spans{', failed' if trace.error else ''}, {trace.trace_id}"
        )
        parts.append(
            f'<a href="/trace/{escape(quote(trace.trace_id, safe=""))}">'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{colour}" '
            f'fill-opacity=".6" stroke="{colour}"><title>{escape(title)}</title></circle></a>'
        )
    parts.append("</svg>")
    return "".join(parts)


def service_map(graph: ServiceMap, width: int = 1200) -> str:
    """The services as boxes in columns (callers left), an arrow per edge labelled with its
    calls and error rate; red where calls failed. "" when there is no service."""
    columns = graph.layers()
    if not columns:
        return ""
    box_w, box_h, gap_y, top = 190, 46, 70, 20
    rows = max(len(column) for column in columns)
    height = top * 2 + rows * box_h + (rows - 1) * gap_y
    step = (width - box_w - 40) / max(len(columns) - 1, 1)
    where: dict[str, tuple[float, float]] = {}
    for index, column in enumerate(columns):
        x = 20 + index * step
        offset = (height - len(column) * box_h - (len(column) - 1) * gap_y) / 2
        for row, service in enumerate(column):
            where[service] = (x, offset + row * (box_h + gap_y))
    parts = [
        f'<svg class="map" viewBox="0 0 {width} {height:.0f}" width="100%" role="img" '
        'xmlns="http://www.w3.org/2000/svg" aria-label="service map">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        f'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{MUTED}"/></marker></defs>',
    ]
    for edge in sorted(graph.edges.values(), key=lambda e: (e.caller, e.callee)):
        (x1, y1), (x2, y2) = where[edge.caller], where[edge.callee]
        if x2 > x1:  # left to right: from the caller's right side to the callee's left
            sx, sy, ex, ey = x1 + box_w, y1 + box_h / 2, x2, y2 + box_h / 2
        else:  # a call back (a loop): from below the caller to below the callee
            sx, sy, ex, ey = x1 + box_w / 2, y1 + box_h, x2 + box_w / 2 + 12, y2 + box_h
        colour = BAD if edge.errors else MUTED
        label = f"{edge.calls:,} calls"
        if edge.errors:
            label += f", {edge.error_rate:.1%} errors"
        mid_x, mid_y = (sx + ex) / 2, (sy + ey) / 2
        bend = 40 if x2 <= x1 else 0
        parts.append(
            f'<path d="M{sx:.1f},{sy:.1f} Q{mid_x:.1f},{mid_y + bend:.1f} {ex:.1f},{ey:.1f}" '
            f'fill="none" stroke="{colour}" stroke-width="1.6" marker-end="url(#arrow)">'
            f"<title>{escape(f'{edge.caller} -> {edge.callee}: {label}')}</title></path>"
            f'<text x="{mid_x:.1f}" y="{mid_y + bend / 2 - 6:.1f}" text-anchor="middle" '
            f'font-size="12" fill="{colour}">{escape(label)}</text>'
        )
    for service, (x, y) in where.items():
        href = escape(f"/search?service={quote(service, safe='')}")
        parts.append(
            f'<a href="{href}"><rect x="{x:.1f}" y="{y:.1f}" width="{box_w}" height="{box_h}" '
            f'rx="6" fill="#f5f7fa" stroke="{OK}"/>'
            f'<text x="{x + box_w / 2:.1f}" y="{y + box_h / 2 + 5:.1f}" text-anchor="middle" '
            f'font-size="14" fill="{INK}">{escape(service)}</text></a>'
        )
    parts.append("</svg>")
    return "".join(parts)
