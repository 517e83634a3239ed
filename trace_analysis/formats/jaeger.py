"""The Jaeger JSON trace format (``/api/traces`` and the UI's "Download JSON"), as typed structs.

Decoding into typed structs with msgspec skips every field the analysis does not read (span
flags, tag types, process tags) and is several times faster than building dicts with the
stdlib ``json`` module. Three things keep the analyzer fast and its memory flat:

* the envelope keeps each trace as an undecoded :class:`msgspec.Raw` slice, so only one
  trace's spans are decoded at a time;
* a span's tags and logs stay encoded until needed: decoding ``{key, type, value}`` tags is
  most of the cost of a span, and only a trace that can contain an error or a fault needs
  them (see :mod:`trace_analysis.model.spans`);
* the decoded :class:`Span` is also the analysis's span, with room for what the analysis
  derives, so no second object is built per span.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec

from trace_analysis.errors import AnalyzerError

_NULL = msgspec.Raw(b"null")
UNKNOWN_SERVICE = "unknown service"  # a span whose process (or resource) names no service
INSTANCE_ID = "service.instance.id"  # OpenTelemetry semconv: one process of a service


class Tag(msgspec.Struct, gc=False):
    key: str
    value: Any = None


class Reference(msgspec.Struct, gc=False):
    ref_type: str = msgspec.field(default="CHILD_OF", name="refType")
    trace_id: str = msgspec.field(default="", name="traceID")
    span_id: str = msgspec.field(default="", name="spanID")


class Log(msgspec.Struct, gc=False):
    timestamp: int = 0
    fields: list[Tag] = []


class Process(msgspec.Struct, gc=False):
    service_name: str = msgspec.field(default="", name="serviceName")
    # still encoded: only ``service.instance.id`` is read, leniently (process_instance)
    tags: msgspec.Raw = _NULL


class Span(msgspec.Struct):
    """A span as Jaeger's JSON has it (times in µs), plus the fields the analysis derives.

    Jaeger's JSON has no keys named like the derived fields, so decoding leaves those at
    their defaults.
    """

    span_id: str = msgspec.field(name="spanID")
    # µs since the epoch (0: not recorded, see trace_analysis.model.tree); skew-corrected later
    start: int = msgspec.field(default=0, name="startTime")
    duration: int = msgspec.field(default=0, name="duration")  # µs
    operation: str = msgspec.field(default="", name="operationName")
    references: list[Reference] | None = None
    tags: msgspec.Raw = _NULL  # still encoded: see decode_tags
    logs: msgspec.Raw = _NULL  # still encoded: see decode_logs
    process_id: str = msgspec.field(default="", name="processID")
    inline_process: Process | None = msgspec.field(default=None, name="process")
    # derived by trace_analysis.model.spans and trace_analysis.model.tree
    parent_id: str | None = None
    service: str = ""
    # the process's ``service.instance.id`` (resource attribute, Jaeger process tag); "" when
    # the data has none (older exports, Zipkin)
    instance: str = ""
    clock: str = ""  # the process that timed this span: spans of one clock cannot skew
    kind: str = "internal"  # Jaeger's span.kind words: server, client, producer, ...
    follows: bool = False  # the parent reference is FOLLOWS_FROM: the parent does not wait
    timed: bool = True  # False: no start time was recorded, the tree placed it
    error: bool = False
    error_evidence: str | None = None  # what showed it failed (trace_analysis.formats.status)
    status_message: str | None = None
    event_message: str | None = None  # "type: message" of a recorded exception (OTLP events)
    http_status: int | None = None
    fault_kind: str | None = None  # set (maybe "") when the span declares an injected fault
    fault_value: str | None = None
    parent: Span | None = None
    children: list[Span] | None = None

    @property
    def end(self) -> int:
        return self.start + self.duration


class JaegerTrace(msgspec.Struct):
    trace_id: str = msgspec.field(name="traceID")
    spans: list[Span] = msgspec.field(name="spans")
    processes: dict[str, Process] = {}
    encoded: msgspec.Raw | None = None  # the trace's own JSON (set by decode_trace), scanned
    # by trace_analysis.model.spans before any tag is decoded
    # set when the spans already carry service, parent and status (converted from OTLP or
    # Zipkin, or merged from several entries): trace_analysis.model.spans then only links them
    prepared: bool = False
    status_read: bool = False  # every span's tags were decoded (kind, status are known)
    entries: int = 1  # Jaeger entries of the input that held this trace (merged by span id)
    # one trace fetched by id from /api/v3: the OTLP JSON answer, which a trace's page reads
    # everything else from (trace_analysis.formats.details); Jaeger JSON keeps ``encoded``
    otlp_document: bytes | None = None


class _FloatSpan(Span):
    """A span whose times some tools write as floats (µs computed from ms): rounded after
    decoding, so the usual all-integer decoding stays strict and fast."""

    start: float = msgspec.field(default=0, name="startTime")  # type: ignore[assignment]
    duration: float = msgspec.field(default=0, name="duration")  # type: ignore[assignment]


class _FloatTrace(JaegerTrace):
    spans: list[_FloatSpan] = msgspec.field(name="spans")  # type: ignore[assignment]


class LooseSpan(Span):
    """A span of a bare list of spans, each with its own trace id and ``process`` (what
    Jaeger's anonymizer and some storage dumps write)."""

    trace_id: str = msgspec.field(default="", name="traceID")


class _LooseFloatSpan(_FloatSpan):
    trace_id: str = msgspec.field(default="", name="traceID")


class JaegerError(msgspec.Struct, gc=False):
    code: int = 0
    msg: str = ""


class Envelope(msgspec.Struct):
    """``{"data": [trace, ...], "errors": [...]}``; a bare trace object also decodes here."""

    data: list[msgspec.Raw] | None = None
    errors: list[JaegerError] | None = None
    spans: msgspec.Raw | None = None


_ENVELOPE = msgspec.json.Decoder(Envelope | list[msgspec.Raw])
_TRACE = msgspec.json.Decoder(JaegerTrace)
_FLOAT_TRACE = msgspec.json.Decoder(_FloatTrace)
_LOOSE_SPANS = msgspec.json.Decoder(list[LooseSpan])
_LOOSE_FLOAT_SPANS = msgspec.json.Decoder(list[_LooseFloatSpan])
_TAGS = msgspec.json.Decoder(list[Tag] | None)
_LOGS = msgspec.json.Decoder(list[Log] | None)


def decode_envelope(buffer: Any, source: str) -> list[msgspec.Raw]:
    """The traces of a Jaeger response or export, each still undecoded.

    Accepts ``{"data": [...]}`` (the API and the UI download), a bare list of traces, and a
    single trace object. ``source`` names the file or URL in error messages.
    """
    try:
        envelope = _ENVELOPE.decode(buffer)
    except msgspec.DecodeError as exc:
        raise AnalyzerError(f"{source}: {_describe(exc, 'the document')}") from None
    if isinstance(envelope, list):
        return envelope
    if envelope.errors:
        messages = "; ".join(f"{e.msg} (code {e.code})" for e in envelope.errors)
        raise AnalyzerError(f"{source}: Jaeger reported an error: {messages}")
    if envelope.data is not None:
        return envelope.data
    if envelope.spans is not None:
        return [msgspec.Raw(bytes(buffer))]
    raise AnalyzerError(
        f"{source}: no 'data' array of traces: not a Jaeger trace export (expected "
        '{"data": [{"traceID", "spans", "processes"}, ...]})'
    )


def decode_trace(raw: msgspec.Raw | bytes, source: str, index: int) -> JaegerTrace:
    """Decode trace number ``index`` (0-based) of ``source``; a shape error names where."""
    try:
        try:
            trace = _TRACE.decode(raw)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise
            trace = _FLOAT_TRACE.decode(raw)
            round_times(trace.spans)
    except msgspec.DecodeError as exc:
        problem = _describe(exc, "the trace")
        raise AnalyzerError(f"{source}: trace #{index + 1}: {problem}") from None
    trace.encoded = raw if isinstance(raw, msgspec.Raw) else msgspec.Raw(raw)
    return trace


def decode_loose_spans(raw: Any, source: str) -> list[LooseSpan]:
    """A bare list of Jaeger spans that carry ``traceID`` and ``process`` themselves."""
    try:
        try:
            return _LOOSE_SPANS.decode(raw)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise
            spans: list[Any] = _LOOSE_FLOAT_SPANS.decode(raw)
            round_times(spans)
            return spans
    except msgspec.DecodeError as exc:
        raise AnalyzerError(f"{source}: {_describe(exc, 'the list of spans')}") from None


def round_times(spans: list[Any]) -> None:
    """Float µs (Grafana's downloads compute them from ms) rounded to the µs."""
    for span in spans:
        span.start = round(span.start)
        span.duration = round(span.duration)


def decode_tags(raw: msgspec.Raw) -> list[Tag]:
    """A span's tags; raises :class:`AnalyzerError`-ready ``msgspec.DecodeError`` if bad."""
    if raw is _NULL:
        return []
    return _TAGS.decode(raw) or []


def process_instance(process: Process | None) -> str:
    """The process's ``service.instance.id`` tag, "" without one. Malformed process tags read
    as none rather than fail the run: the instance only adds a per-instance view."""
    if process is None or process.tags is _NULL:
        return ""
    return _instance_in(bytes(process.tags))


@lru_cache(maxsize=4096)  # every trace of a process repeats its tags: decoded once
def _instance_in(encoded: bytes) -> str:
    try:
        tags = _TAGS.decode(encoded) or []
    except msgspec.DecodeError:
        return ""
    for tag in tags:
        if tag.key == INSTANCE_ID:
            return "" if tag.value is None else str(tag.value)
    return ""


def decode_logs(raw: msgspec.Raw) -> list[Log]:
    """A span's logs (OpenTelemetry events). Malformed logs read as none rather than fail
    the run: they only ever add detail to an error message."""
    if raw is _NULL:
        return []
    try:
        return _LOGS.decode(raw) or []
    except msgspec.DecodeError:
        return []


def describe_error(exc: msgspec.DecodeError, whole: str) -> str:
    """msgspec's message, with its JSON path (``$.spans[0]``) relative to ``whole``."""
    return _describe(exc, whole)


def _describe(exc: msgspec.DecodeError, whole: str) -> str:
    text = str(exc).replace("`$`", whole).replace("`$.", "`")
    if text.startswith("JSON is malformed") or text.startswith("Input data was truncated"):
        return f"not valid JSON ({text})"
    return f"unexpected shape: {text}"
