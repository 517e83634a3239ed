"""The SDK floor: CPU to create and OTLP-encode the spans of one order, with nothing else.

    python benchmarks/span_floor.py TRACE.json [--orders 400] [--repeat 5]

``TRACE.json`` is one trace as Jaeger's ``/api/traces/{id}`` returns it (the ``data[0]``
object): ``benchmarks/overhead.py`` passes a complete order placed on the traced stack in the
same run. Its spans are replayed ``--orders`` times through the OpenTelemetry SDK the services
use, each with its own service's resource, scope, name, kind, parent, attributes, events and
status, into a processor that only keeps them (no instrumentation, no propagation, no hooks, no
export thread). Then they are encoded as the OTLP exporter does (``encode_spans`` and
``SerializeToString``), in batches of ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` (512).

Prints one JSON object: ``spans`` per order, ``create_ms`` and ``encode_ms`` per order (CPU,
``time.process_time``; the median of ``--repeat`` runs), ``floor_ms`` their sum. What the
services spend per order beyond this is instrumentation, context and propagation, hooks,
processors and the export path around the encoder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from stackctl.traces import StoredTrace

BATCH = 512  # the BatchSpanProcessor's default export batch size
# Jaeger's renderings of span fields, not span attributes.
NOT_ATTRIBUTES = {"span.kind", "error", "internal.span.format", "w3c.tracestate"}
KINDS = {kind.name.lower(): kind for kind in SpanKind}


@dataclass
class SpanShape:
    """One span of the order, as the services made it."""

    service: str
    scope: tuple[str, str]
    name: str
    kind: SpanKind
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    error: bool


def parents_first(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every span after its parent (by start time among siblings), whatever the clocks say."""
    ids = {span["spanID"] for span in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in sorted(spans, key=lambda s: s["startTime"]):
        parent = StoredTrace.parent_id(span)
        children.setdefault(parent if parent in ids else None, []).append(span)
    out, todo = [], list(reversed(children.get(None, [])))
    while todo:
        span = todo.pop()
        out.append(span)
        todo.extend(reversed(children.get(span["spanID"], [])))
    return out


def shapes(raw: dict[str, Any]) -> tuple[list[SpanShape], dict[str, Resource]]:
    """The spans of a Jaeger trace, parents before children, and each service's resource."""
    resources = {}
    for process in raw["processes"].values():
        tags = StoredTrace.tags(process)
        resources[process["serviceName"]] = Resource(
            {"service.name": process["serviceName"]} | tags
        )
    out = []
    for span in parents_first(raw["spans"]):
        tags = StoredTrace.tags(span)
        out.append(
            SpanShape(
                service=raw["processes"][span["processID"]]["serviceName"],
                scope=(
                    str(tags.get("otel.scope.name", "")),
                    str(tags.get("otel.scope.version", "")),
                ),
                name=span["operationName"],
                kind=KINDS.get(str(tags.get("span.kind", "internal")), SpanKind.INTERNAL),
                span_id=span["spanID"],
                parent_id=StoredTrace.parent_id(span),
                attributes={
                    k: v
                    for k, v in tags.items()
                    if k not in NOT_ATTRIBUTES and not k.startswith("otel.")
                },
                events=[
                    (str(fields.pop("event", "event")), fields)
                    for fields in (
                        {f["key"]: f["value"] for f in log["fields"]}
                        for log in span.get("logs", [])
                    )
                ],
                error=tags.get("otel.status_code") == "ERROR",
            )
        )
    return out, resources


class Keep(SpanProcessor):
    """Keeps every ended span: the least a processor can do."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def replay(order: Sequence[SpanShape], resources: dict[str, Resource], orders: int) -> tuple:
    """Create ``orders`` copies of the order's spans; (CPU seconds, the ended spans)."""
    keep = Keep()
    tracers = {}
    for service, resource in resources.items():
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(keep)
        tracers[service] = provider
    scoped = {
        (s.service, s.scope): tracers[s.service].get_tracer(s.scope[0] or s.service, s.scope[1])
        for s in order
    }
    started = time.process_time()
    for _ in range(orders):
        live: dict[str, trace.Span] = {}
        for shape in order:
            parent = live.get(shape.parent_id) if shape.parent_id else None
            context = trace.set_span_in_context(parent) if parent is not None else None
            span = scoped[(shape.service, shape.scope)].start_span(
                shape.name, context=context, kind=shape.kind, attributes=shape.attributes
            )
            for name, attributes in shape.events:
                span.add_event(name, attributes)
            if shape.error:
                span.set_status(Status(StatusCode.ERROR))
            live[shape.span_id] = span
        for span in reversed(live.values()):  # children end before their parents
            span.end()
    return time.process_time() - started, keep.spans


def encode(spans: list[ReadableSpan]) -> float:
    """CPU seconds to encode ``spans`` as the OTLP exporter does, batch by batch."""
    started = time.process_time()
    for i in range(0, len(spans), BATCH):
        encode_spans(spans[i : i + BATCH]).SerializeToString()
    return time.process_time() - started


def measure(raw: dict[str, Any], orders: int = 400, repeat: int = 5) -> dict[str, float]:
    """``spans``, ``create_ms``, ``encode_ms``, ``floor_ms`` per order (medians of ``repeat``)."""
    order, resources = shapes(raw)
    replay(order, resources, 20)  # warm-up: imports, caches
    create, encoded = [], []
    for _ in range(repeat):
        seconds, spans = replay(order, resources, orders)
        create.append(1000 * seconds / orders)
        encoded.append(1000 * encode(spans) / orders)
    result = {
        "spans": len(order),
        "create_ms": statistics.median(create),
        "encode_ms": statistics.median(encoded),
    }
    result["floor_ms"] = result["create_ms"] + result["encode_ms"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", type=Path, help="one trace as Jaeger's /api/traces/{id} gives it")
    parser.add_argument("--orders", type=int, default=400, help="orders per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements (the median is kept)")
    args = parser.parse_args()
    raw = json.loads(args.trace.read_text())
    raw = raw["data"][0] if "data" in raw else raw
    print(json.dumps(measure(raw, args.orders, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
