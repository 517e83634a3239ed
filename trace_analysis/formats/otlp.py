"""OTLP JSON traces (TracesData / ExportTraceServiceRequest) turned into the analysis's spans.

Read from: the collector's ``file`` exporter and OTLP/HTTP JSON bodies (``{"resourceSpans":
[...]}``), Jaeger v2's ``/api/v3`` answers (the same under ``"result"``) and Tempo's
trace-by-id answer (``{"batches": [...]}``, older ``instrumentationLibrarySpans`` included).
Per the OTLP JSON encoding, ids are hex (base64, which some older tools wrote, is accepted
too), 64-bit integers may be strings, and span kind and status code may be integers or enum
names. Field names may be the JSON ones (``scopeSpans``, ``traceId``) or, as proto3's JSON
mapping lets a parser accept and Tempo's test data and some protobuf-to-JSON tools write, the
protobuf ones (``scope_spans``, ``trace_id``): :func:`json_field_names` rewrites the latter.
Times are converted from ns to µs. Links are not parents.

A span's attributes stay encoded unless they can matter (the span failed, or an ``error``,
``fault.*`` or 5xx HTTP status code attribute is there): the span's kind and status are fields
of their own in OTLP. Status: see :mod:`trace_analysis.formats.status`.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import msgspec

from trace_analysis.formats.jaeger import INSTANCE_ID, UNKNOWN_SERVICE, Span
from trace_analysis.formats.status import (
    BY_STATUS,
    ERROR_TAG,
    error_tag,
    evidence,
    is_error_code,
    server_error,
)

_NULL = msgspec.Raw(b"null")
# Jaeger's span.kind words, which the rest of the analysis speaks
_KINDS = {0: "internal", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_KIND_NAMES = {f"SPAN_KIND_{word.upper()}": word for word in _KINDS.values()}
_KIND_NAMES["SPAN_KIND_UNSPECIFIED"] = "internal"
_HEX_LENGTHS = (16, 32)  # hex ids; base64 ones are 12 or 24 characters long
# attributes that can make a span fail or carry a fault: an ``error`` or ``fault.*`` key, or an
# HTTP status code of 5xx; every alternative starts with the literal ``"key"``, which keeps the
# scan fast. Key-before-value order is checked first (by the list's first object): attributes
# written value first are always decoded.
_ATTRIBUTES_MATTER = re.compile(
    rb'"key"\s*:\s*"(?:error"|fault\.|http\.(?:response\.)?status_code"\s*,\s*"value"\s*:\s*'
    rb'\{\s*"(?:intValue|stringValue)"\s*:\s*"?5\d\d"?\s*\})'
)
_KEY_FIRST_OR_EMPTY = re.compile(rb'\s*\[\s*(?:\{\s*"key"|\])')


class AnyValue(msgspec.Struct, frozen=True, gc=False):
    string_value: str | None = msgspec.field(default=None, name="stringValue")
    int_value: int | str | None = msgspec.field(default=None, name="intValue")
    bool_value: bool | None = msgspec.field(default=None, name="boolValue")
    double_value: float | None = msgspec.field(default=None, name="doubleValue")

    def plain(self) -> object:
        if self.string_value is not None:
            return self.string_value
        if self.int_value is not None:
            return _int(self.int_value)
        if self.bool_value is not None:
            return self.bool_value
        return self.double_value


class KeyValue(msgspec.Struct, gc=False):
    key: str
    value: AnyValue = AnyValue()


class Status(msgspec.Struct, gc=False):
    code: int | str = 0
    message: str = ""


class OtlpSpan(msgspec.Struct, gc=False):
    trace_id: str = msgspec.field(default="", name="traceId")
    span_id: str = msgspec.field(default="", name="spanId")
    parent_span_id: str = msgspec.field(default="", name="parentSpanId")
    name: str = ""
    kind: int | str = 0
    start_ns: int | str = msgspec.field(default=0, name="startTimeUnixNano")
    end_ns: int | str = msgspec.field(default=0, name="endTimeUnixNano")
    attributes: msgspec.Raw = _NULL
    events: msgspec.Raw = _NULL
    status: Status | None = None


class ScopeSpans(msgspec.Struct, gc=False):
    spans: list[OtlpSpan] | None = None


class Resource(msgspec.Struct, gc=False):
    attributes: list[KeyValue] | None = None


class ResourceSpans(msgspec.Struct, gc=False):
    resource: Resource | None = None
    scope_spans: list[ScopeSpans] | None = msgspec.field(default=None, name="scopeSpans")
    library_spans: list[ScopeSpans] | None = msgspec.field(
        default=None, name="instrumentationLibrarySpans"
    )


class Event(msgspec.Struct, gc=False):
    name: str = ""
    attributes: list[KeyValue] | None = None


class V3ErrorDetails(msgspec.Struct, gc=False):
    """Jaeger's ``/api/v3`` error body: ``{"error": {"httpCode": 404, "message": "..."}}``."""

    message: str = ""
    http_code: int = msgspec.field(default=0, name="httpCode")


class _V3Error(msgspec.Struct, gc=False):
    error: V3ErrorDetails | None = None


def v3_error_message(body: Any) -> str | None:
    """The message of a Jaeger ``/api/v3`` error body, or None if ``body`` is not one."""
    try:
        error = msgspec.json.decode(body, type=_V3Error).error
    except msgspec.DecodeError:
        return None
    return (error.message or "no message") if error is not None else None


# The protobuf names of the trace fields whose JSON name differs (opentelemetry-proto's
# trace.proto, common.proto, resource.proto): the JSON name is their lowerCamelCase.
PROTO_FIELD_NAMES = (
    "resource_spans",
    "scope_spans",
    "instrumentation_library_spans",
    "instrumentation_library",
    "schema_url",
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "time_unix_nano",
    "dropped_attributes_count",
    "dropped_events_count",
    "dropped_links_count",
    "string_value",
    "bool_value",
    "int_value",
    "double_value",
    "array_value",
    "kvlist_value",
    "bytes_value",
)
# A JSON string followed by a colon is always a key, never a value: only keys are rewritten.
_PROTO_KEY = re.compile(rb'"(' + "|".join(PROTO_FIELD_NAMES).encode() + rb')"(\s*:)')
# A document written with protobuf names holds its spans under ``scope_spans`` (or
# ``instrumentation_library_spans``): tested first, at memory speed, so that a document in JSON
# names (the collector's, Jaeger's) never pays for the rewrite.
_PROTO_MARKER = re.compile(rb'_spans"')
PROTO_MARKER_WITHIN = 65_536  # bytes: a document's head, so a large one is not scanned twice


def _camel(match: re.Match[bytes]) -> bytes:
    head, *rest = match.group(1).split(b"_")
    return b'"' + head + b"".join(word.capitalize() for word in rest) + b'"' + match.group(2)


def json_field_names(buffer: Any) -> Any:
    """``buffer`` (OTLP JSON bytes) with the protobuf field names as keys rewritten to their
    JSON names (``"trace_id":`` to ``"traceId":``) when its spans are held under the protobuf
    name (``scope_spans``, looked for in the first :data:`PROTO_MARKER_WITHIN` bytes: the first
    resource's attributes come before it), the spelling of the rest mixed or not; else
    ``buffer`` itself."""
    head = memoryview(buffer)[:PROTO_MARKER_WITHIN]  # any buffer (mmap, Raw), not copied
    if _PROTO_MARKER.search(head) is None:
        return buffer
    return _PROTO_KEY.sub(_camel, bytes(buffer))


RESOURCE_SPANS = msgspec.json.Decoder(list[ResourceSpans] | None)
_ATTRIBUTES = msgspec.json.Decoder(list[KeyValue] | None)
_EVENTS = msgspec.json.Decoder(list[Event] | None)


def collect_spans(
    resource_spans: list[ResourceSpans] | None, into: dict[str, list[Span]], full: bool = False
) -> None:
    """Convert every span of ``resource_spans`` and append it to ``into[trace id]``.

    ``full`` decodes every span's attributes (HTTP status codes for a waterfall); otherwise
    only those of spans that fail or whose attributes can matter (see the module doc).
    """
    ids: dict[str, str] = {}  # trace ids as written -> as compared
    for block in resource_spans or ():
        service, instance, clock = _process(block.resource)
        for scope in _scopes(block):
            for otlp in scope.spans or ():
                written = otlp.trace_id
                trace_id = ids.get(written)
                if trace_id is None:
                    trace_id = ids[written] = hex_id(written)
                spans = into.get(trace_id)
                if spans is None:
                    spans = into[trace_id] = []
                spans.append(convert(otlp, service, clock, full, instance))


def convert(
    otlp: OtlpSpan, service: str, clock: str, full: bool = False, instance: str = ""
) -> Span:
    """One OTLP span as the analysis's span, status and kind read (``full``: see
    :func:`collect_spans`; ``instance``: its resource's ``service.instance.id``)."""
    try:
        start_ns = int(otlp.start_ns)
        end_ns = int(otlp.end_ns)
    except ValueError:
        start_ns = end_ns = 0  # not a time: the span is placed by the tree, with a note
    kind = otlp.kind
    status = otlp.status
    code = status.code if status is not None else 0
    error = code == 2 or (code != 0 and is_error_code(code))
    parent = otlp.parent_span_id
    span_id = otlp.span_id
    span = Span(
        span_id=span_id.lower() if len(span_id) in _HEX_LENGTHS else hex_id(span_id),
        start=start_ns // 1000,
        duration=max(0, (end_ns - start_ns) // 1000) if start_ns else 0,
        operation=otlp.name,
        parent_id=(parent.lower() if len(parent) in _HEX_LENGTHS else hex_id(parent))
        if parent
        else None,
        service=service,
        instance=instance,
        clock=clock,
        kind=_KINDS.get(kind, "internal") if kind.__class__ is int else _kind_name(kind),  # type: ignore[arg-type]
        error=error,
        status_message=(status.message or None) if status is not None else None,
    )
    if error:
        span.error_evidence = BY_STATUS
    attributes = otlp.attributes
    if attributes is not _NULL and (full or error or _attributes_matter(attributes)):
        _read_attributes(span, attributes)
    if span.error and otlp.events is not _NULL:
        span.event_message = exception_message(otlp.events)
    return span


def _attributes_matter(raw: msgspec.Raw) -> bool:
    if not _KEY_FIRST_OR_EMPTY.match(raw):  # type: ignore[call-overload]
        return True
    return _ATTRIBUTES_MATTER.search(raw) is not None  # type: ignore[call-overload]


def _read_attributes(span: Span, raw: msgspec.Raw) -> None:
    """HTTP status, faults and a legacy ``error`` attribute, and whether they make it fail."""
    try:
        attributes = _ATTRIBUTES.decode(raw) or []
    except msgspec.DecodeError:
        return  # attributes only add detail here; the span is still analyzed
    http_status = legacy = None
    error = False
    for attribute in attributes:
        key = attribute.key
        if key == "http.response.status_code":
            http_status = _int(attribute.value.plain())
        elif key == "http.status_code":
            legacy = _int(attribute.value.plain())
        elif key == ERROR_TAG:
            error, message = error_tag(attribute.value.plain())
            span.status_message = span.status_message or message
        elif key == "fault.kind":
            span.fault_kind = str(attribute.value.plain())
        elif key == "fault.value":
            span.fault_value = str(attribute.value.plain())
        elif key == "fault.injected":
            injected = attribute.value.plain() in (True, "true")
            span.fault_kind = span.fault_kind or ("" if injected else None)
    span.http_status = http_status if http_status is not None else legacy
    span.error_evidence = evidence(span.error, error, server_error(span.kind, span.http_status))
    span.error = span.error_evidence is not None


def exception_message(raw: msgspec.Raw) -> str | None:
    """``type: message`` of the first ``exception`` event, if any."""
    try:
        events = _EVENTS.decode(raw) or []
    except msgspec.DecodeError:
        return None
    for event in events:
        if event.name != "exception":
            continue
        fields = {a.key: a.value.plain() for a in event.attributes or ()}
        kind, text = fields.get("exception.type"), fields.get("exception.message")
        if kind and text:
            return f"{kind}: {text}"
        if kind or text:
            return str(kind or text)
    return None


def hex_id(value: str) -> str:
    """A trace or span id as lower-case hex (OTLP JSON writes hex; base64 is converted)."""
    if not value:
        return ""
    try:
        bytes.fromhex(value)
    except ValueError:
        try:
            return base64.b64decode(value, validate=True).hex()
        except (binascii.Error, ValueError):
            return value
    return value.lower()


def _process(resource: Resource | None) -> tuple[str, str, str]:
    """The service name, ``service.instance.id`` ("" without one) and the clock key (service
    and instance, else host) of a resource."""
    attributes = {a.key: a.value.plain() for a in (resource.attributes or ()) if resource}
    service = str(attributes.get("service.name") or "") or UNKNOWN_SERVICE
    instance = str(attributes.get(INSTANCE_ID) or "")
    return service, instance, f"{service}\x00{instance or attributes.get('host.name') or ''}"


def _scopes(block: ResourceSpans) -> list[ScopeSpans]:
    return (block.scope_spans or []) + (block.library_spans or [])


def _kind_name(name: str) -> str:
    return _KIND_NAMES.get(
        name.upper(), name.lower() if name.lower() in _KINDS.values() else "internal"
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
