"""Prepare a decoded trace's spans for analysis: services, parents, duplicates, status.

Jaeger's JSON carries every attribute as a ``{key, type, value}`` tag, and decoding those is
most of the cost of reading a span. The analysis needs tags only to find failing spans and
injected faults, so one regular-expression pass over the trace's JSON first asks whether any
span *can* carry one: an ``error`` tag, status ``ERROR``, a ``fault.*`` attribute, or an HTTP
status code of 5xx. Only then are the tags decoded, for that trace. The scan may say yes
needlessly (a 5xx status on a client span), never no wrongly.
"""

from __future__ import annotations

import re

import msgspec

from trace_analysis.errors import AnalyzerError
from trace_analysis.jaeger_format import (
    JaegerTrace,
    Process,
    Reference,
    Span,
    decode_tags,
    describe_error,
)

UNKNOWN_SERVICE = "unknown-service"
# One pass over the trace's JSON finds a tag that can matter: an ``error`` tag, a ``fault.*``
# attribute, status ERROR, or an HTTP status code of 5xx. The last two need the value, which
# the lookaheads find after the key inside the same (flat) tag object. Jaeger writes ``key``
# before ``value``; for a file written the other way round the scan cannot judge, and says
# yes (see _key_first).
_MATTERS = (
    rb'(?:error"|fault\.[^"]*"'
    rb'|otel\.status_code"(?=[^}]*"value"\s*:\s*"ERROR")'
    rb'|http\.(?:response\.)?status_code"(?=[^}]*"value"\s*:\s*"?5\d\d(?:\.\d*)?"?\s*[,}]))'
)
_CAN_MATTER = re.compile(rb'"key"\s*:\s*"' + _MATTERS)
_CAN_MATTER_COMPACT = re.compile(rb'"key":"' + _MATTERS)  # a third faster, for compact JSON
_FIRST_TAG_FIELD = re.compile(rb'\{(\s*)"(key|type|value)"(\s*):(\s*)')


def build_spans(
    trace: JaegerTrace, source: str = "input"
) -> tuple[list[Span], dict[str, Span], int]:
    """The trace's spans, each span id once, ready for the tree; the same by span id; and how
    many duplicates were dropped (the same span delivered twice: exporter retries, merged
    exports)."""
    processes = trace.processes
    services: dict[str, str] = {}
    trace_id = trace.trace_id
    spans: list[Span] = []
    by_id: dict[str, Span] = {}
    duplicates = 0
    for span in trace.spans:
        span_id = span.span_id
        if span_id in by_id:
            duplicates += 1
            continue
        by_id[span_id] = span
        refs = span.references
        if refs:
            first = refs[0]
            if first.ref_type == "CHILD_OF" and first.trace_id == trace_id:
                span.parent_id = first.span_id or None  # the usual case, inlined
            else:
                span.parent_id = _parent_id(refs, trace_id)
        if span.inline_process is None:
            process_id = span.process_id
            service = services.get(process_id)
            if service is None:
                service = services[process_id] = _service(processes.get(process_id))
            span.service = service
            span.clock = process_id or service
        else:
            span.service = _service(span.inline_process)
            span.clock = span.process_id or span.service
        spans.append(span)
    if may_carry_status(trace.encoded):
        for span in spans:
            read_status(span, trace_id, source)
    return spans, by_id, duplicates


def may_carry_status(encoded: bytes | msgspec.Raw | None) -> bool:
    """Whether the trace's JSON can contain a failing span or a fault (see module doc).

    Without ``encoded`` (a trace built in memory) the answer is always yes.
    """
    if encoded is None:
        return True
    # the first tag object tells how this file was written (one serializer writes it all):
    # a tagless trace has nothing to find, value-before-key order defeats the scan
    first = _FIRST_TAG_FIELD.search(encoded)
    if first is None:
        return False
    if first.group(2) != b"key":
        return True
    compact = not (first.group(1) or first.group(3) or first.group(4))
    return (_CAN_MATTER_COMPACT if compact else _CAN_MATTER).search(encoded) is not None


def read_status(span: Span, trace_id: str, source: str) -> None:
    """Decode the span's tags and set kind, error, status message, HTTP status and faults.

    A span fails on status ERROR (``otel.status_code``), the legacy ``error=true`` tag, or a
    server span answering HTTP 5xx (``http.response.status_code``, or the older
    ``http.status_code``).
    """
    try:
        tags = decode_tags(span.tags)
    except msgspec.DecodeError as exc:
        where = f"span {span.span_id} tags"
        problem = describe_error(exc, where)
        raise AnalyzerError(f"{source}: trace {trace_id}: {problem}") from None
    status = None
    error_tag = False
    http_status = legacy_http_status = None
    for tag in tags:
        key = tag.key
        value = tag.value
        if key == "span.kind":
            span.kind = str(value)
        elif key == "otel.status_code":
            status = value
        elif key == "error":
            error_tag = value is True or (isinstance(value, str) and value.lower() == "true")
        elif key == "otel.status_description":
            span.status_message = str(value)
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
    span.error = (
        status == "ERROR"
        or error_tag
        or (span.kind == "server" and http_status is not None and http_status >= 500)
    )


def _parent_id(refs: list[Reference], trace_id: str) -> str | None:
    """The CHILD_OF reference within this trace, else a FOLLOWS_FROM one within it.

    References into other traces are OpenTelemetry links, not parents.
    """
    follows = None
    for ref in refs:
        other = ref.trace_id
        if other and trace_id and other != trace_id and other.lstrip("0") != trace_id.lstrip("0"):
            continue
        if ref.ref_type == "CHILD_OF":
            return ref.span_id or None
        follows = follows or ref.span_id or None
    return follows


def _service(process: Process | None) -> str:
    return (process.service_name if process else "") or UNKNOWN_SERVICE


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
