"""Prepare a decoded trace's spans for analysis: services, parents, duplicates, status.

Jaeger's JSON carries every attribute as a ``{key, type, value}`` tag, and decoding those is
most of the cost of reading a span. The analysis needs tags only to find failing spans and
injected faults, so one regular-expression pass over the trace's JSON first asks whether any
span *can* carry one: an ``error`` tag, status ``ERROR``, a ``fault.*`` attribute, or an HTTP
status code of 5xx. Only then are the tags decoded, for that trace. The scan may say yes
needlessly (a 5xx status on a client span), never no wrongly. A trace the report shows has
its tags decoded anyway (the critical path needs the span kinds).
"""

from __future__ import annotations

import re

import msgspec

from trace_analysis.errors import AnalyzerError
from trace_analysis.formats.jaeger import (
    UNKNOWN_SERVICE,
    JaegerTrace,
    Process,
    Reference,
    Span,
    decode_tags,
    describe_error,
    process_instance,
)
from trace_analysis.formats.status import (
    ERROR_TAG,
    STATUS_CODE,
    STATUS_DESCRIPTION,
    evidence,
    is_error_code,
    server_error,
)
from trace_analysis.formats.status import error_tag as read_error_tag

_NULL = Span.__struct_defaults__[Span.__struct_fields__.index("tags")]
# One pass over the trace's JSON finds a tag that can matter: an ``error`` tag, a ``fault.*``
# attribute, status ERROR, or an HTTP status code of 5xx. The last two need the value, which
# the lookaheads find after the key inside the same (flat) tag object. Jaeger writes ``key``
# before ``value``; for a trace written the other way round the scan cannot judge, and says
# yes. Whitespace is allowed wherever JSON allows it, so a file that mixes compact and
# indented traces or spans is judged right.
_MATTERS = (
    rb'(?:error"|fault\.[^"]*"'
    rb'|otel\.status_code"(?=[^}]*"value"\s*:\s*(?:"(?i:error)"|2\b))'
    rb'|http\.(?:response\.)?status_code"(?=[^}]*"value"\s*:\s*"?5\d\d(?:\.\d*)?"?\s*[,}]))'
)
_CAN_MATTER = re.compile(rb'"key"\s*:\s*"' + _MATTERS)
_FIRST_TAG_FIELD = re.compile(rb'\{\s*"(key|type|value)"\s*:')
_KIND_RANK = {"client": 0, "producer": 0, "server": 2, "consumer": 2}  # caller halves first
# the two halves of one call: caller then callee; a caller whose kind was not recorded
# (Zipkin's client half, when only the server half says ``shared``) still pairs with a callee
_HALVES = {
    ("client", "server"),
    ("producer", "consumer"),
    ("internal", "server"),
    ("internal", "consumer"),
}


def prepare(trace: JaegerTrace, source: str = "input") -> None:
    """Set service, clock, parent and (where it can matter) status on each span of one entry.

    Does nothing for a trace already prepared (converted from OTLP or Zipkin, or merged).
    """
    if trace.prepared:
        return
    processes = trace.processes
    resolved: dict[str, tuple[str, str, str]] = {}
    trace_id = trace.trace_id
    for span in trace.spans:
        refs = span.references
        if refs:
            first = refs[0]
            if first.ref_type == "CHILD_OF" and first.trace_id == trace_id:
                span.parent_id = first.span_id or None  # the usual case, inlined
            else:
                span.parent_id, span.follows = _parent_id(refs, trace_id)
        if span.inline_process is None:
            process_id = span.process_id
            found = resolved.get(process_id)
            if found is None:
                process = processes.get(process_id)
                service = _service(process)
                clock = f"{service}\x00{process_id}"
                found = resolved[process_id] = (service, process_instance(process), clock)
            span.service, span.instance, span.clock = found
        else:
            span.service = _service(span.inline_process)
            span.instance = process_instance(span.inline_process)
            span.clock = f"{span.service}\x00{span.process_id}"
    if may_carry_status(trace.encoded):
        for span in trace.spans:
            read_status(span, trace_id, source)
        trace.status_read = True
    trace.prepared = True


def merge_entries(parts: list[JaegerTrace], source: str = "input") -> JaegerTrace:
    """One trace from several entries with its trace id (a trace listed twice, or spread over
    lines): every entry's spans, each entry's processes resolved on its own; a span that
    comes twice is resolved by :func:`build_spans`."""
    if len(parts) == 1:
        return parts[0]
    spans: list[Span] = []
    for part in parts:
        prepare(part, source)
        spans.extend(part.spans)
    return JaegerTrace(
        trace_id=parts[0].trace_id,
        spans=spans,
        prepared=True,
        status_read=all(part.status_read for part in parts),
        entries=sum(part.entries for part in parts),
    )


def read_statuses(trace: JaegerTrace, spans: list[Span], source: str = "input") -> None:
    """Decode the tags the pre-scan skipped (the critical path needs the span kinds)."""
    if trace.status_read:
        return
    for span in spans:
        if span.tags is not _NULL:
            read_status(span, trace.trace_id, source)


def build_spans(
    trace: JaegerTrace, source: str = "input"
) -> tuple[list[Span], dict[str, Span], list[str]]:
    """The trace's spans ready for the tree, the same by span id, and notes on what was
    repaired.

    A span id seen twice is either the same span delivered twice (exporter retries, merged
    exports: the fuller copy is kept) or the client and server halves of one call that B3
    instrumentation (Zipkin, Envoy, Istio) reports under one id: both are kept, the server
    half as the child of the client half and the parent of the id's children, as Jaeger's
    span-id de-duplication does. Only a client and a server (or a producer and a consumer) are
    two halves: other spans sharing an id are kept with their own parents. None of this
    depends on the order of the spans.
    """
    prepare(trace, source)
    spans = trace.spans
    by_id: dict[str, Span] = {}
    clashes: dict[str, list[Span]] | None = None
    unnamed = 0
    for span in spans:
        span_id = span.span_id
        if span_id in by_id:
            if clashes is None:
                clashes = {}
            clashes.setdefault(span_id, [by_id[span_id]]).append(span)
        else:
            by_id[span_id] = span
        if span.service == UNKNOWN_SERVICE:
            unnamed += 1
    notes: list[str] = []
    if clashes:
        spans = _resolve_clashes(trace, spans, by_id, clashes, notes, source)
    if unnamed:
        notes.append(
            f"{unnamed} span(s) without a process or service name, shown as '{UNKNOWN_SERVICE}'"
        )
    return spans, by_id, notes


def _resolve_clashes(
    trace: JaegerTrace,
    spans: list[Span],
    by_id: dict[str, Span],
    clashes: dict[str, list[Span]],
    notes: list[str],
    source: str,
) -> list[Span]:
    dropped: set[int] = set()
    duplicates = shared = unpaired = 0
    for span_id, group in clashes.items():
        read_statuses(trace, group, source)
        kept: dict[tuple[object, ...], Span] = {}
        for span in group:  # the same span twice: keep the fuller copy (the later, if equal)
            key = (span.service, span.kind, span.start, span.duration, span.operation)
            other = kept.get(key)
            if other is None:
                kept[key] = span
                continue
            duplicates += 1
            if _size(span) >= _size(other):
                dropped.add(id(other))
                kept[key] = span
            else:
                dropped.add(id(span))
        halves = sorted(
            kept.values(),
            key=lambda s: (_KIND_RANK.get(s.kind, 1), s.start, -s.duration, s.service, s.operation),
        )
        # a caller half followed by its callee half (client then server, producer then
        # consumer) is one call: the callee is the child of the caller, and the id's children
        # belong to the last callee; other spans sharing the id (two clients, say) are not
        # halves of anything and keep their own parents
        by_id[span_id] = halves[0]
        for index, half in enumerate(halves):
            by_id[f"{span_id}\x00{index}"] = half
            if index and (halves[index - 1].kind, half.kind) in _HALVES:
                half.parent_id = f"{span_id}\x00{index - 1}"
                by_id[span_id] = half
                shared += 1
            elif index:
                unpaired += 1
    if duplicates:
        notes.append(f"{duplicates} duplicate span(s) ignored")
    if shared:
        notes.append(
            f"{shared} span(s) share their span id with another (client and server halves of "
            "one call): each server half is shown as the child of its client half"
        )
    if unpaired:
        notes.append(
            f"{unpaired} span(s) share their span id with another span that is not the other "
            "half of its call (only client/server or producer/consumer are): kept side by side"
        )
    return [span for span in spans if id(span) not in dropped] if dropped else spans


def _size(span: Span) -> int:
    return len(span.tags) + len(span.logs)


def may_carry_status(encoded: bytes | msgspec.Raw | None) -> bool:
    """Whether the trace's JSON can contain a failing span or a fault (see module doc).

    Without ``encoded`` (a trace built in memory) the answer is always yes.
    """
    if encoded is None:
        return True
    # the first tag object tells how this trace was written: a tagless trace has nothing to
    # find, value-before-key order defeats the scan
    first = _FIRST_TAG_FIELD.search(encoded)
    if first is None:
        return False
    if first.group(1) != b"key":
        return True
    return _CAN_MATTER.search(encoded) is not None


def read_status(span: Span, trace_id: str, source: str) -> None:
    """Decode the span's tags and set kind, error, status message, HTTP status and faults.

    The status rule is :mod:`trace_analysis.formats.status`'s; the HTTP status is
    ``http.response.status_code``, or the older ``http.status_code``.
    """
    try:
        tags = decode_tags(span.tags)
    except msgspec.DecodeError as exc:
        where = f"span {span.span_id} tags"
        problem = describe_error(exc, where)
        raise AnalyzerError(f"{source}: trace {trace_id}: {problem}") from None
    status_error = error_tag = False
    tag_message = None
    http_status = legacy_http_status = None
    for tag in tags:
        key = tag.key
        value = tag.value
        if key == "span.kind":
            span.kind = str(value)
        elif key == STATUS_CODE:
            status_error = is_error_code(value)
        elif key == ERROR_TAG:
            error_tag, tag_message = read_error_tag(value)
        elif key == STATUS_DESCRIPTION:
            span.status_message = str(value) or None
        elif key == "http.response.status_code":
            http_status = _int(value)
        elif key == "http.status_code":
            legacy_http_status = _int(value)
        elif key == "fault.kind":
            span.fault_kind = str(value)
        elif key == "fault.value":
            span.fault_value = str(value)
        elif key == "fault.injected" and value in (True, "true") and span.fault_kind is None:
            span.fault_kind = ""
    if http_status is None:
        http_status = legacy_http_status
    span.http_status = http_status
    span.error_evidence = evidence(status_error, error_tag, server_error(span.kind, http_status))
    span.error = span.error_evidence is not None
    if span.status_message is None:
        span.status_message = tag_message


def _parent_id(refs: list[Reference], trace_id: str) -> tuple[str | None, bool]:
    """The CHILD_OF reference within this trace, else a FOLLOWS_FROM one within it (and
    whether it is FOLLOWS_FROM). References into other traces are OpenTelemetry links, not
    parents."""
    follows = None
    for ref in refs:
        other = ref.trace_id
        if other and trace_id and other != trace_id and other.lstrip("0") != trace_id.lstrip("0"):
            continue
        if ref.ref_type == "CHILD_OF":
            return ref.span_id or None, False
        follows = follows or ref.span_id or None
    return follows, follows is not None


def _service(process: Process | None) -> str:
    return (process.service_name if process else "") or UNKNOWN_SERVICE


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
