"""Everything a trace records about each span, for one trace's page: attributes, events (an
exception's type, message and stack), status, kind, instrumentation scope, links, resource.

The analysis reads only what it judges by (see :mod:`trace_analysis.formats.jaeger`); a page
that shows one trace reads the rest here, from the document Jaeger answered: OTLP JSON
(``/api/v3/traces/{id}``) or Jaeger JSON (``/api/traces/{id}``). Both become the same
:class:`SpanDetails`, with OTLP's words: Jaeger JSON's ``span.kind``, ``otel.status_code``,
``otel.status_description`` and ``otel.scope.*`` tags become the fields they stand for, its
logs the events (``event`` naming each), its process the resource, its references other than
the parent the links. Values are shown as text: strings as they are, numbers and booleans as
JSON writes them, arrays and maps as JSON.

A document that cannot be read gives no details (an empty mapping): the page still draws the
trace, which the analysis read on its own.
"""

from __future__ import annotations

import json
from collections.abc import Set
from dataclasses import dataclass, field
from typing import Any

import msgspec

from trace_analysis.formats.jaeger import JaegerTrace
from trace_analysis.formats.otlp import hex_id

Attributes = list[tuple[str, str]]  # (key, value as text), in the order written
# Jaeger JSON tags that carry OTLP span fields, not attributes
_KIND_TAG, _STATUS_TAG, _MESSAGE_TAG = "span.kind", "otel.status_code", "otel.status_description"
_SCOPE_TAGS = ("otel.scope.name", "otel.library.name")
_SCOPE_VERSION_TAGS = ("otel.scope.version", "otel.library.version")
_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}
_WARNINGS = "@jaeger@warnings"  # Jaeger v2's span warnings, in its OTLP answers


@dataclass(slots=True)
class Event:
    """A span event (Jaeger: a log): its name, time (epoch µs) and attributes."""

    name: str
    time_us: int
    attributes: Attributes = field(default_factory=list)


@dataclass(slots=True)
class Link:
    """A span this one links to: another trace's, or a FOLLOWS_FROM reference (Jaeger)."""

    trace_id: str
    span_id: str
    kind: str  # "link" (OTLP), or Jaeger's refType
    attributes: Attributes = field(default_factory=list)


@dataclass(slots=True)
class SpanDetails:
    """One span as the trace recorded it (times in epoch µs, as the document says)."""

    span_id: str
    service: str
    operation: str
    start_us: int
    kind: str = "unspecified"  # OTLP's words, lower case: server, client, internal, ...
    status_code: str = "UNSET"  # UNSET, OK or ERROR
    status_message: str = ""
    attributes: Attributes = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    scope: tuple[str, str] = ("", "")  # instrumentation scope name and version
    resource: Attributes = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # Jaeger's, for this span


Details = dict[str, list[SpanDetails]]  # by span id (two halves of a call may share one)


def from_otlp(document: bytes) -> Details:
    """The spans of an OTLP JSON document (``{"resourceSpans": ...}``, or it under
    ``"result"`` as Jaeger's ``/api/v3`` answers), whatever their traces."""
    details: Details = {}
    for spans in otlp_by_trace(document).values():
        for span_id, found in spans.items():
            details.setdefault(span_id, []).extend(found)
    return details


def otlp_by_trace(document: bytes, wanted: Set[str] | None = None) -> dict[str, Details]:
    """The spans of an OTLP JSON document by trace id (a search's answer mixes traces); only
    those whose span id is in ``wanted``, if given (a page draws at most a few hundred of a
    trace's spans)."""
    try:
        body = _OTLP.decode(document)
    except msgspec.DecodeError:
        return {}
    blocks = body.result.resource_spans if body.result is not None else body.resource_spans
    by_trace: dict[str, Details] = {}
    for block in blocks or ():
        decoded = _raw(block.resource)
        resource = _attributes(decoded.get("attributes") if isinstance(decoded, dict) else None)
        service = next((value for key, value in resource if key == "service.name"), "")
        for scope_block in (block.scope_spans or []) + (block.library_spans or []):
            scope = _raw(scope_block.scope) or _raw(scope_block.library)
            scope = scope if isinstance(scope, dict) else {}
            scope_pair = (str(scope.get("name") or ""), str(scope.get("version") or ""))
            for span in scope_block.spans or ():
                if wanted is not None and hex_id(span.span_id) not in wanted:
                    continue
                item = _otlp_span(_expand(span), service, resource, scope_pair)
                trace = by_trace.setdefault(hex_id(span.trace_id), {})
                trace.setdefault(item.span_id, []).append(item)
    return by_trace


def from_jaeger(document: bytes, wanted: Set[str] | None = None) -> Details:
    """The spans of one Jaeger JSON trace (``{"traceID", "spans", "processes"}``, or a
    ``{"data": [trace]}`` answer); ``wanted``: as :func:`otlp_by_trace`."""
    try:
        body = msgspec.json.decode(document)
    except msgspec.DecodeError:
        return {}
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        traces = [t for t in body["data"] if isinstance(t, dict)]
    else:
        traces = [body] if isinstance(body, dict) else []
    details: Details = {}
    for trace in traces:
        processes = trace.get("processes") if isinstance(trace.get("processes"), dict) else {}
        trace_id = str(trace.get("traceID") or "")
        for span in _list(trace, "spans"):
            if wanted is not None and str(span.get("spanID") or "").lower() not in wanted:
                continue
            process = span.get("process") or processes.get(str(span.get("processID")), {})
            item = _jaeger_span(span, process if isinstance(process, dict) else {}, trace_id)
            details.setdefault(item.span_id, []).append(item)
    return details


def pick(details: Details, span_id: str, service: str, operation: str) -> SpanDetails | None:
    """The span with this id (of this service and operation, where two share the id)."""
    found = details.get(span_id) or []
    for item in found:
        if item.service == service and item.operation == operation:
            return item
    return found[0] if found else None


def text(value: Any) -> str:
    """A plain value as the page shows it (see the module doc)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


# --- OTLP JSON ------------------------------------------------------------------------------
# A typed skeleton, its bulky parts left encoded: a page decodes those of the spans it draws.
_NULL = msgspec.Raw(b"null")


class _Span(msgspec.Struct, gc=False):
    trace_id: str = msgspec.field(default="", name="traceId")
    span_id: str = msgspec.field(default="", name="spanId")
    name: Any = ""
    kind: Any = 0
    start: Any = msgspec.field(default=0, name="startTimeUnixNano")
    attributes: msgspec.Raw = _NULL
    events: msgspec.Raw = _NULL
    links: msgspec.Raw = _NULL
    status: msgspec.Raw = _NULL


class _Scope(msgspec.Struct, gc=False):
    scope: msgspec.Raw = _NULL
    library: msgspec.Raw = msgspec.field(default=_NULL, name="instrumentationLibrary")
    spans: list[_Span] | None = None


class _Block(msgspec.Struct, gc=False):
    resource: msgspec.Raw = _NULL
    scope_spans: list[_Scope] | None = msgspec.field(default=None, name="scopeSpans")
    library_spans: list[_Scope] | None = msgspec.field(
        default=None, name="instrumentationLibrarySpans"
    )


class _Result(msgspec.Struct, gc=False):
    resource_spans: list[_Block] | None = msgspec.field(default=None, name="resourceSpans")


class _Document(_Result, gc=False):
    result: _Result | None = None  # Jaeger's /api/v3 answer


_OTLP = msgspec.json.Decoder(_Document)


def _raw(raw: msgspec.Raw) -> Any:
    """An encoded part, decoded as plain values (None if it is not JSON)."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def _expand(span: _Span) -> dict[str, Any]:
    """The span as the plain values :func:`_otlp_span` reads."""
    return {
        "spanId": span.span_id,
        "name": span.name,
        "kind": span.kind,
        "startTimeUnixNano": span.start,
        "attributes": _raw(span.attributes),
        "events": _raw(span.events),
        "links": _raw(span.links),
        "status": _raw(span.status),
    }


def _otlp_span(
    span: dict[str, Any], service: str, resource: Attributes, scope: tuple[str, str]
) -> SpanDetails:
    status = _dict(span, "status")
    code = status.get("code", 0)
    kind = span.get("kind", 0)
    start_us = _int(span.get("startTimeUnixNano")) // 1000
    return SpanDetails(
        span_id=hex_id(str(span.get("spanId") or "")),
        service=service,
        operation=str(span.get("name") or ""),
        start_us=start_us,
        kind=_KINDS.get(kind, "unspecified")
        if isinstance(kind, int)
        else str(kind).removeprefix("SPAN_KIND_").lower(),
        status_code=_STATUS.get(code, "UNSET")
        if isinstance(code, int)
        else str(code).removeprefix("STATUS_CODE_").upper(),
        status_message=str(status.get("message") or ""),
        attributes=[pair for pair in _attributes(span.get("attributes")) if pair[0] != _WARNINGS],
        warnings=_warnings(span.get("attributes")),
        events=sorted(
            (
                Event(
                    str(event.get("name") or ""),
                    _int(event.get("timeUnixNano")) // 1000,
                    _attributes(event.get("attributes")),
                )
                for event in _list(span, "events")
            ),
            key=lambda event: event.time_us,
        ),
        links=[
            Link(
                hex_id(str(link.get("traceId") or "")),
                hex_id(str(link.get("spanId") or "")),
                "link",
                _attributes(link.get("attributes")),
            )
            for link in _list(span, "links")
        ],
        scope=scope,
        resource=resource,
    )


def _warnings(items: Any) -> list[str]:
    """Jaeger's warnings on a span (its adjusters', its sanitizers'), which its v3 API writes
    as the attribute ``@jaeger@warnings``, a list of strings."""
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and item.get("key") == _WARNINGS:
            value = _plain(item.get("value"))
            return [text(v) for v in value] if isinstance(value, list) else [text(value)]
    return []


def _attributes(items: Any) -> Attributes:
    if not isinstance(items, list):
        return []
    return [
        (str(item.get("key", "")), text(_plain(item.get("value"))))
        for item in items
        if isinstance(item, dict)
    ]


def _plain(value: Any) -> Any:
    """An OTLP AnyValue as a plain value (arrays and maps as lists and dicts)."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return _int(value["intValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "doubleValue" in value:
        return value["doubleValue"]
    if "bytesValue" in value:
        return value["bytesValue"]
    if "arrayValue" in value:
        return [_plain(v) for v in _list(value["arrayValue"], "values")]
    if "kvlistValue" in value:
        return {
            str(kv.get("key", "")): _plain(kv.get("value"))
            for kv in _list(value["kvlistValue"], "values")
        }
    return None


# --- Jaeger JSON ----------------------------------------------------------------------------


def _jaeger_span(span: dict[str, Any], process: dict[str, Any], trace_id: str) -> SpanDetails:
    tags = _tags(span.get("tags"))
    lifted = {key: value for key, value in tags if key in _LIFTED}
    status = lifted.get(_STATUS_TAG, "").upper()
    if not status and lifted.get("error") == "true":
        status = "ERROR"
    links = []
    parent_seen = False
    for ref in _list(span, "references"):
        ref_type = str(ref.get("refType") or "CHILD_OF")
        other = str(ref.get("traceID") or "")
        same = not other or other.lstrip("0") == trace_id.lstrip("0")
        if ref_type == "CHILD_OF" and same and not parent_seen:
            parent_seen = True  # the parent: drawn by the waterfall, not a link
            continue
        links.append(Link(other, str(ref.get("spanID") or ""), ref_type))
    service = str(process.get("serviceName") or "")
    resource = [("service.name", service)] if service else []
    return SpanDetails(
        span_id=str(span.get("spanID") or "").lower(),
        service=service,
        operation=str(span.get("operationName") or ""),
        start_us=_int(span.get("startTime")),
        kind=lifted.get(_KIND_TAG, "") or "unspecified",
        status_code=status or "UNSET",
        status_message=lifted.get(_MESSAGE_TAG, ""),
        attributes=[(key, value) for key, value in tags if key not in _LIFTED or key == "error"],
        events=sorted(
            (
                Event(_event_name(fields), _int(log.get("timestamp")), _without_event(fields))
                for log in _list(span, "logs")
                for fields in [_tags(log.get("fields"))]
            ),
            key=lambda event: event.time_us,
        ),
        links=links,
        scope=(_first(lifted, _SCOPE_TAGS), _first(lifted, _SCOPE_VERSION_TAGS)),
        resource=resource + _tags(process.get("tags")),
        warnings=[str(w) for w in _plain_list(span.get("warnings")) if w],
    )


_LIFTED = {_KIND_TAG, _STATUS_TAG, _MESSAGE_TAG, "error", *_SCOPE_TAGS, *_SCOPE_VERSION_TAGS}


def _tags(items: Any) -> Attributes:
    if not isinstance(items, list):
        return []
    return [
        (str(tag.get("key", "")), text(tag.get("value"))) for tag in items if isinstance(tag, dict)
    ]


def _event_name(fields: Attributes) -> str:
    return next((value for key, value in fields if key == "event"), "log")


def _without_event(fields: Attributes) -> Attributes:
    return [(key, value) for key, value in fields if key != "event"]


def _first(values: dict[str, str], keys: tuple[str, ...]) -> str:
    return next((values[key] for key in keys if values.get(key)), "")


# --- shared ---------------------------------------------------------------------------------


def _list(container: Any, key: str) -> list[Any]:
    value = container.get(key) if isinstance(container, dict) else None
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _plain_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(container: Any, key: str) -> dict[str, Any]:
    value = container.get(key) if isinstance(container, dict) else None
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def of_trace(trace: JaegerTrace, wanted: Set[str] | None = None) -> Details:
    """The details of a trace fetched from Jaeger, from the document it was read from (none
    for a trace built otherwise); ``wanted``: of these span ids only (OTLP)."""
    if trace.otlp_document is not None:
        return otlp_by_trace(trace.otlp_document, wanted).get(trace.trace_id, {})
    if trace.encoded is not None:
        return from_jaeger(bytes(trace.encoded), wanted)
    return {}


class PageReader:
    """:func:`of_trace` for the traces of a search, read page by page: the traces of one
    ``/api/v3`` page share its document, decoded once."""

    def __init__(self) -> None:
        self._document: bytes | None = None
        self._traces: dict[str, Details] = {}

    def __call__(self, trace: JaegerTrace) -> Details:
        document = trace.otlp_document
        if document is None:
            return of_trace(trace)
        if document is not self._document:
            self._document, self._traces = document, otlp_by_trace(document)
        return self._traces.get(trace.trace_id, {})


def document(trace: JaegerTrace) -> tuple[bytes, str] | None:
    """The trace as Jaeger answered it, to download: (JSON, its format: ``otlp`` or
    ``jaeger``); None for a trace built otherwise."""
    if trace.otlp_document is not None:
        return trace.otlp_document, "otlp"
    if trace.encoded is not None:
        return b'{"data":[' + bytes(trace.encoded) + b"]}", "jaeger"
    return None
