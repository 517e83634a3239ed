"""Reading saved traces in any shape a user holds, told apart by content, not file name.

Read: gzip-compressed files (by their magic bytes) and a UTF-8 byte-order mark; Jaeger v1 JSON
(the ``{"data": [...]}`` envelope, jaeger-ui's ``{"data": {trace}}``, a single trace object,
a list of traces, a list of spans that carry their own ``process``), OTLP JSON
(``resourceSpans``, Jaeger v3's ``{"result": ...}``, Tempo's ``{"batches": [...]}``; protobuf
field names too), Zipkin v2 JSON (a list of spans, or of traces), and JSON Lines of any of
these (``jq -c``, the collector's ``file`` exporter). Anything else is refused with one line
naming what it looks like (a Tempo search answer, Jaeger's Thrift batch JSON, OTLP metrics...).

Jaeger JSON keeps its fast path: the file is memory-mapped, split into undecoded per-trace
slices in one pass, and each trace is decoded, analyzed and dropped in turn. A trace id that
comes in several entries is merged by span id (never the first copy alone). The other formats
mix traces freely (an OTLP batch holds spans of many traces, a trace spreads over lines), so
their spans are converted and grouped by trace id before the traces are analyzed.
"""

from __future__ import annotations

import contextlib
import gzip
import mmap
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from trace_analysis.errors import AnalyzerError
from trace_analysis.formats import otlp, zipkin
from trace_analysis.formats.jaeger import (
    JaegerError,
    JaegerTrace,
    Span,
    decode_loose_spans,
    decode_trace,
    describe_error,
)
from trace_analysis.model.spans import merge_entries

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
FORMATS = "Jaeger JSON, OTLP JSON or Zipkin v2 JSON"
THRIFT_BATCH = (
    "this looks like Jaeger's Thrift Batch as JSON (one 'process', spans with traceIdLow/"
    "traceIdHigh), what a client sends to a collector; the analyzer reads "
    f"{FORMATS}: export the traces from Jaeger's query API (/api/traces/<id>) instead"
)
_LEADING_TRACE_ID = re.compile(rb'\s*\{\s*"traceID"\s*:\s*"([^"]*)"')
_LINE = re.compile(rb"[^\n]+")
# OTLP (JSON or protobuf field names) and Zipkin spans
_SPAN_TRACE_ID = re.compile(rb'"trace(?:Id|_id)"\s*:\s*"([^"]*)"')
_ABSENT = msgspec.Raw(b"")  # a key the document does not have


class _Top(msgspec.Struct):
    """The keys that tell the object shapes apart; their values stay undecoded."""

    data: msgspec.Raw = _ABSENT
    errors: list[JaegerError] | None = None
    trace_id: str | None = msgspec.field(default=None, name="traceID")
    spans: msgspec.Raw = _ABSENT
    process: msgspec.Raw = _ABSENT  # Jaeger's Thrift Batch: one process, its spans
    resource_spans: msgspec.Raw = msgspec.field(default=_ABSENT, name="resourceSpans")
    resource_spans_pb: msgspec.Raw = msgspec.field(default=_ABSENT, name="resource_spans")
    result: msgspec.Raw = _ABSENT
    batches: msgspec.Raw = _ABSENT
    trace: msgspec.Raw = _ABSENT  # Tempo v2 API: {"trace": {"resourceSpans": ...}}
    error: msgspec.Raw = _ABSENT  # Jaeger v3 error body


class _TraceId(msgspec.Struct):
    trace_id: str = msgspec.field(default="", name="traceID")


_TOP = msgspec.json.Decoder(_Top | list[msgspec.Raw])
_RAWS = msgspec.json.Decoder(list[msgspec.Raw] | None)
_TRACE_ID = msgspec.json.Decoder(_TraceId)
_OBJECT = msgspec.json.Decoder(dict[str, Any])


class Collected:
    """What a document holds: Jaeger traces still encoded (the fast path), and traces of the
    other shapes already converted, by trace id, in the order first seen."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.raws: list[msgspec.Raw] = []
        self.parts: dict[str, list[JaegerTrace]] = {}
        self.shapes: set[str] = set()

    def add_spans(self, by_trace: dict[str, list[Span]], converted: bool) -> None:
        for trace_id, spans in by_trace.items():
            part = JaegerTrace(trace_id=trace_id, spans=spans)
            part.prepared = part.status_read = converted
            # OTLP batches and Zipkin lists spread traces as a matter of course: only a trace
            # listed again in a Jaeger export is worth a warning
            part.entries = 0 if converted else 1
            self.parts.setdefault(trace_id, []).append(part)

    def add_document(self, document: Any, raw: Any, line: int | None = None) -> None:
        """Sort one decoded document (``_Top`` or a list of undecoded items; ``raw`` its
        JSON) into place."""
        where = self.source if line is None else f"{self.source}: line {line}"
        if isinstance(document, list):
            self._add_list(document, where)
            return
        if document.errors:
            messages = "; ".join(f"{e.msg} (code {e.code})" for e in document.errors)
            raise AnalyzerError(f"{where}: Jaeger reported an error: {messages}")
        if document.data is not _ABSENT:
            self._add_envelope(document.data, where)
        elif document.spans is not _ABSENT and document.process is not _ABSENT:
            raise AnalyzerError(f"{where}: {THRIFT_BATCH}")
        elif document.spans is not _ABSENT:
            self.shapes.add("Jaeger trace")
            self.raws.append(msgspec.Raw(bytes(raw)))
        elif document.resource_spans is not _ABSENT:
            self._add_otlp(document.resource_spans, where, "OTLP JSON")
        elif document.resource_spans_pb is not _ABSENT:  # protobuf field names
            self._add_otlp(document.resource_spans_pb, where, "OTLP JSON")
        elif document.result is not _ABSENT:
            self._add_otlp_object(document.result, where, "Jaeger v3 (OTLP JSON)")
        elif document.batches is not _ABSENT:
            self._add_otlp(document.batches, where, "Tempo (OTLP JSON)")
        elif document.trace is not _ABSENT:
            self._add_otlp_object(document.trace, where, "Tempo (OTLP JSON)")
        elif document.error is not _ABSENT:
            message = otlp.v3_error_message(b'{"error":' + bytes(document.error) + b"}")
            raise AnalyzerError(
                f"{where}: this is an error answer, not traces: {message or 'no message'}"
            )
        else:
            try:
                probe = _OBJECT.decode(raw)
            except msgspec.DecodeError:
                probe = None
            raise AnalyzerError(f"{where}: {looks_like(probe)}")

    def _add_envelope(self, data: msgspec.Raw, where: str) -> None:
        if bytes(memoryview(data)[:1]) == b"{":  # jaeger-ui's state: {"data": {trace}}
            inner = _decode_top(data, where)
            if not isinstance(inner, list) and inner.spans is not _ABSENT and inner.trace_id:
                self.shapes.add("jaeger-ui trace")
                self.raws.append(data)
                return
        try:
            items = _RAWS.decode(data) or []
        except msgspec.DecodeError:
            raise AnalyzerError(
                f"{where}: unexpected shape: 'data' is not an array of traces "
                '(Jaeger\'s export is {"data": [{"traceID", "spans", "processes"}]})'
            ) from None
        if items and bytes(memoryview(items[0])[:1]) == b'"':
            raise AnalyzerError(
                f"{where}: this looks like Jaeger's list of services (/api/services), "
                f"not traces; the analyzer reads {FORMATS}"
            )
        self.shapes.add("Jaeger JSON")
        self.raws.extend(items)

    def _add_list(self, items: list[msgspec.Raw], where: str) -> None:
        if not items:
            return
        first = bytes(items[0]).lstrip()
        if first.startswith(b"["):
            self._add_zipkin(items, where, nested=True)
            return
        try:
            probe = _OBJECT.decode(first)
        except msgspec.DecodeError:
            probe = None
        if not isinstance(probe, dict):
            raise AnalyzerError(f"{where}: {looks_like(None, 'a list of non-objects')}")
        if "binaryAnnotations" in probe:
            raise AnalyzerError(
                f"{where}: this looks like Zipkin v1 JSON; the analyzer reads Zipkin v2 "
                "(Zipkin's /api/v2 answers)"
            )
        if "spans" in probe and "process" in probe:
            raise AnalyzerError(f"{where}: {THRIFT_BATCH}")
        if "spans" in probe and "traceID" in probe:
            self.shapes.add("Jaeger JSON")
            self.raws.extend(items)
        elif "spanID" in probe:
            self.shapes.add("Jaeger spans")
            spans = decode_loose_spans(msgspec.json.encode(items), where)
            by_trace: dict[str, list[Span]] = {}
            for span in spans:
                by_trace.setdefault(span.trace_id, []).append(span)
            self.add_spans(by_trace, converted=False)
        elif "traceId" in probe and "id" in probe:
            self._add_zipkin(items, where, nested=False)
        elif "resourceSpans" in probe or "resource_spans" in probe:
            for item in items:
                self.add_document(_decode_top(item, where), item)
        else:
            raise AnalyzerError(f"{where}: {looks_like(probe, 'a list of objects')}")

    def _add_zipkin(self, items: list[msgspec.Raw], where: str, nested: bool) -> None:
        self.shapes.add("Zipkin v2 JSON")
        encoded = msgspec.json.encode(items)
        decoder = zipkin.ZIPKIN_TRACES if nested else zipkin.ZIPKIN_SPANS
        spans = _decoded(decoder, encoded, f"{where}: Zipkin v2 JSON", "the list")
        self._add_converted(_flatten(spans) if nested else spans, zipkin.collect_spans)

    def _add_otlp_object(self, raw: msgspec.Raw, where: str, shape: str) -> None:
        document = _decode_top(raw, where)
        if isinstance(document, list):
            raise AnalyzerError(f"{where}: {shape} without 'resourceSpans'")
        spans = document.resource_spans
        if spans is _ABSENT:
            spans = document.resource_spans_pb
        if spans is _ABSENT:
            raise AnalyzerError(f"{where}: {shape} without 'resourceSpans'")
        self._add_otlp(spans, where, shape)

    def _add_otlp(self, raw: msgspec.Raw, where: str, shape: str) -> None:
        self.shapes.add(shape)
        raw = otlp.json_field_names(raw)
        blocks = _decoded(otlp.RESOURCE_SPANS, raw, f"{where}: {shape}", "resourceSpans")
        self._add_converted(blocks, otlp.collect_spans)

    def _add_converted(
        self, items: Any, collect: Callable[[Any, dict[str, list[Span]]], object]
    ) -> None:
        """OTLP or Zipkin spans, converted by ``collect``, added trace by trace."""
        by_trace: dict[str, list[Span]] = {}
        collect(items, by_trace)
        self.add_spans(by_trace, converted=True)

    def traces(self) -> Iterator[JaegerTrace]:
        """Every trace, each trace id once: the Jaeger entries first, in file order."""
        if self.parts and self.raws:  # mixed shapes: the Jaeger entries join the others
            for index, raw in enumerate(self.raws):
                trace = decode_trace(raw, self.source, index)
                self.parts.setdefault(trace.trace_id, []).append(trace)
            self.raws.clear()
        yield from iter_jaeger(self.raws, self.source)
        self.raws.clear()
        parts = self.parts
        while parts:
            trace_id = next(iter(parts))
            yield merge_entries(parts.pop(trace_id), self.source)


def iter_jaeger(raws: list[msgspec.Raw], source: str) -> Iterator[JaegerTrace]:
    """Decode Jaeger trace entries one by one; entries that share a trace id are merged at
    the first of them. Messages number the traces from 1, in file order."""
    ids = [trace_id_of(raw) for raw in raws]
    if len(set(ids)) == len(ids):
        for index in range(len(raws)):
            yield decode_trace(raws[index], source, index)
        return
    positions: dict[str, list[int]] = {}
    for index, trace_id in enumerate(ids):
        positions.setdefault(trace_id, []).append(index)
    for index, trace_id in enumerate(ids):
        where = positions.get(trace_id)
        if where is None:
            continue  # merged at its first entry
        if len(where) == 1:
            yield decode_trace(raws[index], source, index)
            continue
        del positions[trace_id]
        yield merge_entries([decode_trace(raws[i], source, i) for i in where], source)


def trace_id_of(raw: msgspec.Raw) -> str:
    """A Jaeger trace entry's id, read from its first key where Jaeger writes it."""
    match = _LEADING_TRACE_ID.match(raw)  # type: ignore[call-overload]
    if match is not None:
        return match.group(1).decode()
    try:
        return _TRACE_ID.decode(raw).trace_id
    except msgspec.DecodeError:
        return ""  # decode_trace says what is wrong with it


@contextlib.contextmanager
def open_input(path: Path | str) -> Iterator[tuple[Any, str]]:
    """The bytes of a saved file (memory-mapped; gzip decompressed; a BOM skipped) and the
    name to give it in messages. ``"-"`` reads standard input.

    Raises :class:`AnalyzerError` naming the file and the cause for a missing, unreadable,
    empty or corrupt file.
    """
    if str(path) == "-":
        yield _unwrap(sys.stdin.buffer.read(), "<stdin>"), "<stdin>"
        return
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise AnalyzerError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AnalyzerError(f"{path}: is a directory, not a trace file") from None
    except OSError as exc:
        raise AnalyzerError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        if not path.is_file() or path.stat().st_size == 0:
            raise AnalyzerError(f"{path}: file is empty, not a trace file")
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield _unwrap(mapped, str(path)), str(path)
        finally:
            # the undecoded traces point into the mapping; once they are gone it closes now,
            # else when the last of them is collected
            with contextlib.suppress(BufferError):
                mapped.close()


def iter_file_traces(path: Path | str) -> Iterator[JaegerTrace]:
    """Yield the traces of a saved file, whatever its shape (see the module doc)."""
    with open_input(path) as (buffer, source):
        yield from iter_traces(buffer, source)


def iter_traces(buffer: Any, source: str) -> Iterator[JaegerTrace]:
    """Detect the shape of ``buffer`` and yield its traces, each trace id once."""
    head = bytes(buffer[:4096]).lstrip()
    if not head:
        if not bytes(buffer).strip():
            raise AnalyzerError(f"{source}: file is empty, not a trace file")
    elif head[:1] not in b"{[":
        raise AnalyzerError(f"{source}: {looks_like_text(head)}")
    try:
        document = _TOP.decode(buffer)
    except msgspec.DecodeError as exc:
        if "trailing characters" not in str(exc):
            raise AnalyzerError(f"{source}: {describe_error(exc, 'the document')}") from None
        yield from _iter_lines(buffer, source)
        return
    collected = Collected(source)
    collected.add_document(document, buffer)
    yield from collected.traces()


def _iter_lines(buffer: Any, source: str) -> Iterator[JaegerTrace]:
    """JSON Lines. A Jaeger trace per line takes the fast path. Other lines (OTLP batches, the
    collector's ``file`` exporter) are converted as they are read, and each of their traces
    is yielded after the last line that holds a span of it: one scan for ``traceId`` values
    finds that line first, so memory holds only the traces still open, not the file."""
    view = memoryview(buffer)
    lines = [(match.start(), match.end()) for match in _LINE.finditer(buffer)]
    last_line: dict[str, int] = {}
    for index, (start, end) in enumerate(lines):
        for found in set(_SPAN_TRACE_ID.findall(buffer, start, end)):
            last_line[otlp.hex_id(found.decode())] = index
    collected = Collected(source)
    for index, (start, end) in enumerate(lines):
        line = view[start:end]
        if _LEADING_TRACE_ID.match(line):  # type: ignore[call-overload]
            collected.shapes.add("Jaeger JSON")
            collected.raws.append(msgspec.Raw(line))
            continue
        if not bytes(line[:64]).strip():
            continue
        document = _decode_top(line, f"{source}: line {index + 1}")
        collected.add_document(document, line, index + 1)
        parts = collected.parts
        done = [trace_id for trace_id in parts if last_line.get(trace_id, index) <= index]
        for trace_id in done:
            yield merge_entries(parts.pop(trace_id), source)
    yield from collected.traces()


def _decode_top(raw: Any, where: str) -> Any:
    return _decoded(_TOP, raw, where, "the document")


def _decoded(decoder: msgspec.json.Decoder, raw: Any, where: str, whole: str) -> Any:
    """``raw`` decoded; a mismatch is one line naming where it is and what was expected."""
    try:
        return decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise AnalyzerError(f"{where}: {describe_error(exc, whole)}") from None


def _flatten(lists: list[list[Any]]) -> list[Any]:
    return [item for inner in lists for item in inner]


def looks_like(probe: dict[str, Any] | None, what: str = "an object") -> str:
    """One line naming the shape of a document the analyzer does not read."""
    keys = set(probe or ())
    if {"traces", "metrics"} <= keys:
        shape = (
            "a Tempo search answer (trace summaries, no spans), not traces; fetch each trace "
            "by id (Tempo's /api/traces/<traceID>, OTLP JSON) and analyze that"
        )
    elif "resourceMetrics" in keys:
        shape = "OTLP metrics, not traces"
    elif "resourceLogs" in keys:
        shape = "OTLP logs, not traces"
    elif {"schema_version", "summary", "traces"} <= keys:
        shape = "an analyze_traces.py report, not traces"
    elif "log" in keys and isinstance(probe, dict) and isinstance(probe.get("log"), dict):
        shape = "a HAR file (browser network log), not traces"
    elif {"status", "data"} <= keys:
        shape = "a Prometheus API answer, not traces"
    elif "dashboard" in keys or "panels" in keys:
        shape = "a Grafana dashboard, not traces"
    elif keys:
        shape = f"{what} with keys {', '.join(sorted(keys)[:6])}, not traces"
    else:
        shape = f"{what} of no known trace shape"
    return f"this looks like {shape}; the analyzer reads {FORMATS}"


def looks_like_text(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "this looks like gzip inside gzip; decompress it once first"
    if head[:1] == b"<":
        return f"this looks like an HTML or XML page, not JSON; the analyzer reads {FORMATS}"
    if head.startswith(b"PK"):
        return f"this looks like a zip archive; unzip it first (the analyzer reads {FORMATS})"
    return f"not valid JSON (it starts with {head[:20]!r}); the analyzer reads {FORMATS}"


def _unwrap(buffer: Any, source: str) -> Any:
    """Decompress gzip (by its magic bytes) and skip a UTF-8 byte-order mark."""
    if bytes(buffer[:2]) == GZIP_MAGIC:
        try:
            buffer = gzip.decompress(buffer)
        except (OSError, EOFError, zlib.error) as exc:
            raise AnalyzerError(f"{source}: gzip file is corrupt or truncated ({exc})") from None
    if bytes(buffer[:3]) == UTF8_BOM:
        return memoryview(buffer)[3:]
    return buffer
