"""One trace's page in the trace browser: the trace first, as Jaeger's UI opens it, then
everything each span recorded.

- A header: the root's service and operation, when it started, how long it took, its
  services, depth and span count, how many spans failed, and the trace's warnings (clock
  skew corrected, a missing parent or root, duplicate spans; Jaeger's own span warnings).
- What the analysis says of it: the culprit on the critical path, the first failure, faults.
- The waterfall (critical path outlined, failed spans striped), each span a ``<details>``
  (no script) that opens on its kind, status, instrumentation scope, attributes, events (an
  exception's type and message, its stack trace whole), links, log lines and resource. The
  span of the first failure is open from the start.

No window statistics: one trace has no percentiles. Every value is escaped; long values wrap.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from trace_analysis.analyses.self_time import self_times
from trace_analysis.formats.details import Attributes, Details, SpanDetails, pick
from trace_analysis.formats.jaeger import INSTANCE_ID
from trace_analysis.model.results import TraceResult, WaterfallRow
from trace_analysis.reports import wording
from trace_analysis.reports.html_report import (
    SpanView,
    _colours_of,
    _legend,
    _waterfall,
    page_head,
    tags,
)
from trace_analysis.sources.span_logs import LogLine, TraceLogs

STACK_KEY = "exception.stacktrace"
CSS = """
.head-facts { display: flex; flex-wrap: wrap; gap: 6px 28px; margin: 10px 0 6px; }
.head-facts div { display: flex; flex-direction: column; }
.head-facts span { font-size: 12px; color: var(--muted); } .head-facts b { font-size: 15px; }
.warnings { margin: 8px 0; padding: 8px 12px 8px 28px; border: 1px solid #f0d9a8;
  background: #fff8e8; border-radius: 6px; } .warnings li { margin: 2px 0; }
.actions a { margin-right: 16px; } form.find { display: inline-block; margin-left: 8px; }
.wf.spans { display: block; }
.wf.spans .head, .wf.spans summary { display: grid;
  grid-template-columns: minmax(260px, 34%) 1fr; }
.wf.spans summary { list-style: none; cursor: pointer; }
.wf.spans summary::-webkit-details-marker { display: none; }
.wf.spans summary:hover { background: #f0f4fb; }
.wf.spans summary .label::before { content: "\\25B8\\00A0"; color: var(--muted); }
.wf.spans details[open] > summary .label::before { content: "\\25BE\\00A0"; }
.wf.spans details[open] > summary { background: #e8effa; }
.sd { margin: 0 0 10px; padding: 8px 14px 10px; border-left: 3px solid #0b57d0;
  background: var(--bg-soft); font-size: 12.5px; }
.sd.bad { border-left-color: var(--bad); }
.sd h4 { font-size: 12.5px; margin: 10px 0 4px; }
.sd .line span { margin-right: 14px; } .sd .status-error { color: var(--bad); font-weight: 600; }
table.kv { margin: 0; width: auto; max-width: 100%; table-layout: auto; }
table.kv td { padding: 2px 10px 2px 0; border-bottom: 1px solid #e6e9ef; }
table.kv td.k { white-space: nowrap; color: var(--muted); font-family: ui-monospace, monospace; }
table.kv td.v, table.logs td.t { white-space: pre-wrap; overflow-wrap: anywhere;
  font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
table.logs { margin: 0; } table.logs td { padding: 2px 10px 2px 0; font-size: 12px; }
table.logs td.l { white-space: nowrap; font-weight: 600; }
.event { margin: 4px 0 8px; padding: 4px 8px; border: 1px solid var(--line); border-radius: 4px;
  background: #fff; } .event.exception { border-color: #f0b4b4; }
pre.stack { white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0 0; padding: 6px 8px;
  max-height: 420px; overflow: auto; background: #fff5f5; border-radius: 4px; font-size: 12px; }
details.stats { margin: 16px 0; } details.stats > summary { cursor: pointer; }
details.resource > summary { cursor: pointer; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
"""


def render_trace_page(
    trace: TraceResult,
    details: Details,
    logs: TraceLogs | None,
    nav: str = "",
    jaeger_ui: str = "",
    find: str = "",
) -> str:
    """The page (see the module doc); ``logs`` None: this browser reads no log files;
    ``nav``: the browser's navigation, put first; ``jaeger_ui``: a Jaeger UI to link to;
    ``find``: Jaeger UI's ``uiFind``, a span id or text: the spans that match are the ones
    open (instead of the first failure's)."""
    colours = _colours_of(trace.services)
    first = trace.error_origin.span_id if trace.error_origin else None
    matched = _found_spans(trace, details, find) if find.strip() else None
    trace_id = escape(trace.trace_id)
    # the browser's nav, then the root as the heading, as Jaeger's UI has it: "service: operation"
    parts = page_head(f"Trace {trace.trace_id}")[:-1]
    parts += [
        f"<style>{CSS}</style>",
        nav,
        f"<h1>{escape(trace.root_service)}: {escape(trace.root_operation)} {tags(trace)}</h1>",
        f'<div class="mono muted">Trace {trace_id}</div>',
    ]
    parts.append(_header(trace))
    parts.append(_warnings(trace, details))
    parts.append(_findings(trace))
    parts.append(_actions(trace, jaeger_ui, find, matched))
    parts.append(_legend(colours, marks=True))

    on_path: dict[str, int] = {}
    for step in trace.critical_path:
        on_path[step.span_id] = on_path.get(step.span_id, 0) + step.self_us

    def detail(row: WaterfallRow) -> SpanView:
        found = pick(details, row.span_id, row.service, row.operation)
        is_open = row.span_id == first if matched is None else id(row) in matched
        own = on_path.get(row.span_id) if row.on_critical_path else None
        return SpanView(_span_body(row, found, logs, own), is_open, _marks(row, found))

    parts.append(_waterfall(trace, colours, detail))
    if trace.waterfall is not None and len(trace.waterfall) < trace.span_count:
        more = trace.span_count - len(trace.waterfall)
        parts.append(f'<p class="muted">... {more} more spans not drawn.</p>')
    parts.append(_statistics(trace))
    if logs is not None:
        parts.append(_logs_note(trace, logs))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _marks(row: WaterfallRow, found: SpanDetails | None) -> list[tuple[int, bool]]:
    """The span's events on its bar, as Jaeger's UI marks its logs: µs from the trace's start
    (the span's own clock, moved with it), kept within the bar."""
    if found is None:
        return []
    end = row.start_us + row.duration_us
    return [
        (min(max(row.start_us + event.time_us - found.start_us, row.start_us), end),
         event.name == "exception")
        for event in found.events
        if event.time_us
    ]  # fmt: skip


def _statistics(trace: TraceResult) -> str:
    """Jaeger UI's trace statistics: per service and operation, the spans, their total and
    self time and how many failed, most self time first; folded."""
    rows = trace.waterfall or []
    if not rows:
        return ""
    groups: dict[tuple[str, str], list[int]] = {}
    for row, own in zip(rows, self_times(rows), strict=True):
        group = groups.setdefault((row.service, row.operation), [0, 0, 0, 0])
        group[0] += 1
        group[1] += row.duration_us
        group[2] += own
        group[3] += row.error
    ranked = sorted(groups.items(), key=lambda item: -item[1][2])
    body = "".join(
        f"<tr><td>{escape(service)}</td><td>{escape(operation)}</td>"
        f'<td class="num">{count}</td>'
        f'<td class="num">{wording.unit_for(total)(total)}</td>'
        f'<td class="num">{wording.unit_for(own)(own)}</td>'
        f'<td class="num">{wording.percent(own, trace.end_to_end_us or 1)}</td>'
        f'<td class="num">{failed}</td></tr>'
        for (service, operation), (count, total, own, failed) in ranked
    )
    head = (
        '<tr><th>service</th><th>operation</th><th class="num">spans</th><th class="num">'
        'total</th><th class="num">self</th><th class="num">self, of the trace</th>'
        '<th class="num">failed</th></tr>'
    )
    return (
        '<details class="stats"><summary><b>Trace statistics</b> <span class="muted">'
        "(per operation: spans, total and self time)</span></summary>"
        f"<table>{head}{body}</table></details>"
    )


def _header(trace: TraceResult) -> str:
    rows = trace.waterfall or []
    unit = wording.trace_unit(trace)
    depth = max((row.depth for row in rows), default=0) + 1
    failed = sum(row.error for row in rows)
    facts = [
        ("trace start (UTC)", wording.iso(trace.start_us) or "-"),
        ("duration", unit(trace.latency_us)),
        ("end to end", unit(trace.end_to_end_us)),
        (f"services ({len(trace.services)})", ", ".join(trace.services)),
        ("depth", str(depth)),
        ("total spans", str(trace.span_count)),
        ("failed spans", str(failed)),
    ]
    cells = "".join(
        f"<div><span>{escape(label)}</span><b>{escape(value)}</b></div>" for label, value in facts
    )
    return f'<div class="head-facts">{cells}</div>'


def _warnings(trace: TraceResult, details: Details) -> str:
    items = list(trace.notes)
    warned = [item for found in details.values() for item in found if item.warnings]
    if warned:
        items.append(f"{len(warned)} span(s) carry Jaeger warnings (shown in each span)")
    if not items:
        return ""
    listed = "".join(f"<li>{escape(item)}</li>" for item in items)
    return f'<ul class="warnings"><b>warnings</b>{listed}</ul>'


def _findings(trace: TraceResult) -> str:
    unit = wording.trace_unit(trace)
    facts = [
        (label, text)
        for label, text in (
            ("critical path culprit", wording.culprit_text(trace, unit, always=True)),
            ("first failure", wording.error_text(trace, spans_after=True)),
            ("faults", wording.faults_text(trace)),
        )
        if text
    ]
    if not trace.error:
        facts.append(("first failure", "none, no span failed"))
    items = "".join(f"<li><b>{escape(label)}:</b> {escape(text)}</li>" for label, text in facts)
    return f'<ul class="facts">{items}</ul>'


def _actions(trace: TraceResult, jaeger_ui: str, find: str, matched: set[int] | None) -> str:
    path = f"/trace/{quote(trace.trace_id, safe='')}"
    links = [
        (f"{path}/json", "download JSON"),
        (f"/search?service={quote(trace.root_service, safe='')}", "more traces of this service"),
    ]
    if jaeger_ui:
        links.append((f"{jaeger_ui.rstrip('/')}{path}", "open in Jaeger UI"))
    body = "".join(f'<a href="{escape(href)}">{escape(text)}</a>' for href, text in links)
    found = ""
    if matched is not None:
        found = f'<span class="muted">{len(matched)} span(s) match, opened below</span>'
    form = (
        f'<form class="find" method="get" action="{escape(path)}">'
        '<input name="uiFind" placeholder="find a span: id, name, attribute" size="32" '
        f'value="{escape(find)}"> <button type="submit">Find</button> {found}</form>'
    )
    return f'<div class="actions">{body}{form}</div>'


def _found_spans(trace: TraceResult, details: Details, find: str) -> set[int]:
    """The rows whose span matches ``find``: its id, or text in its service, name, kind,
    status message, attributes (keys and values), events or resource (case ignored)."""
    wanted = find.strip().lower()
    found = set()
    for row in trace.waterfall or []:
        if row.span_id == wanted:
            found.add(id(row))
            continue
        span = pick(details, row.span_id, row.service, row.operation)
        texts = [row.service, row.operation]
        if span is not None:
            texts += [span.kind, span.status_message]
            texts += [part for pair in span.attributes + span.resource for part in pair]
            for event in span.events:
                texts.append(event.name)
                texts += [part for pair in event.attributes for part in pair]
        if any(wanted in text.lower() for text in texts):
            found.add(id(row))
    return found


def _span_body(
    row: WaterfallRow, found: SpanDetails | None, logs: TraceLogs | None, on_path_us: int | None
) -> str:
    unit = wording.unit_for(max(row.duration_us, 1))
    bad = row.error or (found is not None and found.status_code == "ERROR")
    line = [
        f"<span><b>{escape(row.service)}</b> {escape(row.operation)}</span>",
        f"<span>duration {unit(row.duration_us)}</span>",
        f"<span>start +{wording.unit_for(max(row.start_us, 1))(row.start_us)}</span>",
        f'<span class="mono">span {escape(row.span_id)}</span>',
    ]
    if on_path_us is not None:
        line.append(f"<span><b>critical path</b> {unit(on_path_us)} of its own</span>")
    parts = []
    if found is None:
        parts.append('<p class="muted">No details: Jaeger did not answer this span whole.</p>')
    else:
        status = escape(found.status_code)
        if found.status_message:
            status += f": {escape(found.status_message)}"
        css = "status-error" if found.status_code == "ERROR" else ""
        line[1:1] = [
            f"<span>kind {escape(found.kind)}</span>",
            f'<span class="{css}">status {status}</span>',
        ]
        instance = next((value for key, value in found.resource if key == INSTANCE_ID), None)
        if instance:  # which replica: a bad one is found by its id (/dependencies)
            line.append(f'<span>instance <span class="mono">{escape(instance)}</span></span>')
        if found.scope[0]:
            scope = " ".join(filter(None, found.scope))
            line.append(f"<span>scope {escape(scope)}</span>")
        parts += [f'<p class="muted">warning: {escape(w)}</p>' for w in found.warnings]
        parts.append(_section("Attributes", found.attributes, _kv(found.attributes)))
        parts.append(_events(found))
        parts.append(_links(found))
    lines = None if logs is None else logs.by_span.get(row.span_id, [])
    if lines is not None:
        parts.append(_section("Log lines", lines, _log_table(lines)))
    if found is not None and found.resource:
        summary = ", ".join(f"{key}={value}" for key, value in found.resource[:6])
        parts.append(
            '<details class="resource"><summary><b>Resource</b> '
            f'<span class="mono muted">{escape(summary)}</span></summary>'
            f"{_kv(found.resource)}</details>"
        )
    head = f'<div class="line">{"".join(line)}</div>'
    return f'<div class="sd{" bad" if bad else ""}">{head}{"".join(parts)}</div>'


def _section(title: str, items: list, body: str) -> str:  # type: ignore[type-arg]
    if not items:
        return f'<h4>{escape(title)} <span class="muted">(none)</span></h4>'
    return f'<h4>{escape(title)} <span class="muted">({len(items)})</span></h4>{body}'


def _kv(pairs: Attributes) -> str:
    rows = "".join(
        f'<tr><td class="k">{escape(key)}</td><td class="v">{escape(value)}</td></tr>'
        for key, value in pairs
        if key != STACK_KEY
    )
    stacks = "".join(
        f'<pre class="stack">{escape(value)}</pre>' for key, value in pairs if key == STACK_KEY
    )
    return (f'<table class="kv">{rows}</table>' if rows else "") + stacks


def _events(found: SpanDetails) -> str:
    blocks = []
    for event in found.events:
        offset = event.time_us - found.start_us
        at = f"+{wording.unit_for(max(abs(offset), 1))(offset)}" if event.time_us else ""
        css = "event exception" if event.name == "exception" else "event"
        blocks.append(
            f'<div class="{css}"><b>{escape(event.name)}</b> '
            f'<span class="muted">{escape(at)}</span>{_kv(event.attributes)}</div>'
        )
    return _section("Events", found.events, "".join(blocks))


def _links(found: SpanDetails) -> str:
    rows = []
    for link in found.links:
        target = escape(f"/trace/{quote(link.trace_id, safe='')}") if link.trace_id else ""
        trace = f'<a class="mono" href="{target}">{escape(link.trace_id)}</a>' if target else ""
        rows.append(
            f"<div>{escape(link.kind)} {trace} "
            f'<span class="mono">span {escape(link.span_id)}</span>{_kv(link.attributes)}</div>'
        )
    return _section("Links", found.links, "".join(rows)) if found.links else ""


def _log_table(lines: list[LogLine]) -> str:
    rows = "".join(
        f'<tr><td class="mono">{escape(line.time)}</td><td class="l">{escape(line.level)}</td>'
        f'<td class="t">{escape(line.text)}</td><td class="muted">{escape(line.file)}</td></tr>'
        for line in lines
    )
    return f'<table class="logs">{rows}</table>'


def _logs_note(trace: TraceResult, logs: TraceLogs) -> str:
    shown = {row.span_id for row in trace.waterfall or []}
    outside = sum(len(lines) for span, lines in logs.by_span.items() if span not in shown)
    text = f"{logs.count} log line(s) of this trace in {logs.files} log file(s)"
    if outside:
        text += f", {outside} of them outside the spans drawn"
    if logs.partial:
        text += f"; only the newest part of {', '.join(logs.partial)} was read"
    if logs.truncated:
        text += "; more lines than shown"
    rows = [line for span, lines in logs.by_span.items() if span not in shown for line in lines]
    table = _log_table(rows) if rows else ""
    return f'<h2>Log lines</h2><p class="muted">{escape(text)}.</p>{table}'
