"""Zipkin v2 JSON (``/api/v2/trace/{id}``, ``/api/v2/traces``, Grafana downloads of a Zipkin
source) turned into the analysis's spans.

A Zipkin span: ``traceId``, ``id``, ``parentId``, ``name``, ``kind`` (CLIENT, SERVER,
PRODUCER, CONSUMER), ``timestamp`` and ``duration`` in µs, ``localEndpoint.serviceName``,
``tags`` (strings), ``shared`` (the server half of a call whose client half has the same id).
Status: see :mod:`trace_analysis.formats.status` (``otel.status_code``, ``error`` holding the
message, or the older ``otel.status_description``).
"""

from __future__ import annotations

import msgspec

from trace_analysis.formats.jaeger import UNKNOWN_SERVICE, Span
from trace_analysis.formats.status import (
    ERROR_TAG,
    STATUS_CODE,
    STATUS_DESCRIPTION,
    error_tag,
    evidence,
    is_error_code,
    server_error,
)


class Endpoint(msgspec.Struct, gc=False):
    service_name: str = msgspec.field(default="", name="serviceName")
    ipv4: str = ""


class ZipkinSpan(msgspec.Struct, gc=False):
    trace_id: str = msgspec.field(default="", name="traceId")
    span_id: str = msgspec.field(default="", name="id")
    parent_id: str | None = msgspec.field(default=None, name="parentId")
    name: str = ""
    kind: str | None = None
    timestamp: int | float = 0
    duration: int | float = 0
    local_endpoint: Endpoint | None = msgspec.field(default=None, name="localEndpoint")
    tags: dict[str, str] = {}
    shared: bool = False


ZIPKIN_SPANS = msgspec.json.Decoder(list[ZipkinSpan])
ZIPKIN_TRACES = msgspec.json.Decoder(list[list[ZipkinSpan]])  # /api/v2/traces


def collect_spans(zipkin: list[ZipkinSpan], into: dict[str, list[Span]]) -> int:
    """Convert ``zipkin`` and append each span to ``into[trace id]``; returns how many spans
    had no service (no ``localEndpoint.serviceName``)."""
    unnamed = 0
    for item in zipkin:
        span = convert(item)
        unnamed += span.service == UNKNOWN_SERVICE
        into.setdefault(item.trace_id.lower(), []).append(span)
    return unnamed


def convert(item: ZipkinSpan) -> Span:
    endpoint = item.local_endpoint
    service = (endpoint.service_name if endpoint else "") or UNKNOWN_SERVICE
    span = Span(
        span_id=item.span_id.lower(),
        start=round(item.timestamp),
        duration=round(item.duration),
        operation=item.name,
    )
    span.parent_id = item.parent_id.lower() if item.parent_id else None
    span.service = service
    span.clock = f"{service}\x00{endpoint.ipv4 if endpoint else ''}"
    # a ``shared`` span is the server half of a call, even where the kind was left out
    span.kind = (item.kind or ("server" if item.shared else "internal")).lower()
    tags = item.tags
    http_status = _int(tags.get("http.response.status_code") or tags.get("http.status_code"))
    span.http_status = http_status
    tagged, message = error_tag(tags.get(ERROR_TAG, False))
    span.error_evidence = evidence(
        is_error_code(tags.get(STATUS_CODE)), tagged, server_error(span.kind, http_status)
    )
    span.error = span.error_evidence is not None
    span.status_message = message or tags.get(STATUS_DESCRIPTION) or None
    if "fault.kind" in tags or tags.get("fault.injected") == "true":
        span.fault_kind = tags.get("fault.kind", "")
        span.fault_value = tags.get("fault.value")
    return span


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
