"""A hostile OTLP client for the collector-bounds tests: spans with chosen names, services,
attributes and sizes, sent over OTLP/HTTP (JSON) or OTLP/gRPC (protobuf), and the collector's
resident memory and span-metric series read while it happens.

Everything talks to 127.0.0.1 only (the test stacks' ports).
"""

from __future__ import annotations

import gzip
import json
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from stackctl.metrics import scrape
from tests.compose_model import COLLECTOR_CONFIG, resolve_otel_config

MIB = 1 << 20
CALLS = "traces_span_metrics_calls_total"
OVERFLOW = "otel_metric_overflow"


def collector_setting(*path: str) -> Any:
    """One setting of otel-collector/config.yaml at its default (the figures under test)."""
    node: Any = resolve_otel_config(COLLECTOR_CONFIG, {})
    for key in path:
        node = node[key]
    return node


CARDINALITY_LIMIT = int(
    collector_setting("connectors", "span_metrics", "aggregation_cardinality_limit")
)
MEMORY_LIMIT_MIB = int(collector_setting("processors", "memory_limiter", "limit_mib"))
HTTP_BODY_LIMIT = int(
    collector_setting("receivers", "otlp", "protocols", "http", "max_request_body_size")
)
GRPC_LIMIT = (
    int(collector_setting("receivers", "otlp", "protocols", "grpc", "max_recv_msg_size_mib")) * MIB
)
GROUPS = 17  # 16 hex digits of the service.name hash, and spans without a service.name


# --- OTLP/HTTP JSON --------------------------------------------------------------------------


def json_span(name: str, attributes: dict[str, str] | None = None, kind: int = 2) -> dict[str, Any]:
    now = time.time_ns()
    return {
        "traceId": secrets.token_hex(16),
        "spanId": secrets.token_hex(8),
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(now - 2_000_000),
        "endTimeUnixNano": str(now),
        "attributes": [
            {"key": k, "value": {"stringValue": v}} for k, v in (attributes or {}).items()
        ],
    }


def json_request(by_service: Iterable[tuple[str, list[dict[str, Any]]]]) -> bytes:
    """An OTLP/HTTP JSON body: one resource per (service.name, spans)."""
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                    },
                    "scopeSpans": [{"scope": {"name": "hostile"}, "spans": spans}],
                }
                for service, spans in by_service
            ]
        }
    ).encode()


def padded_body(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes: one span whose attribute fills it."""
    empty = json_request([("hostile-large", [json_span("upload", {"payload": ""})])])
    return json_request(
        [("hostile-large", [json_span("upload", {"payload": "a" * (size - len(empty))})])]
    )


def post_json(
    url: str, body: bytes, gzipped: bool = False, timeout: float = 60
) -> tuple[int | None, str]:
    """POST ``/v1/traces``: (status, text), status None when the connection was closed on us."""
    headers = {"Content-Type": "application/json"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    try:
        response = httpx.post(f"{url}/v1/traces", content=body, headers=headers, timeout=timeout)
    except httpx.TransportError as exc:
        return None, repr(exc)
    return response.status_code, response.text


# --- OTLP/gRPC protobuf ----------------------------------------------------------------------


def proto_request(
    size: int, service: str = "hostile-grpc"
) -> trace_service_pb2.ExportTraceServiceRequest:
    """An export request of about ``size`` bytes (one span, one large attribute)."""
    now = time.time_ns()
    span = trace_pb2.Span(
        trace_id=secrets.token_bytes(16),
        span_id=secrets.token_bytes(8),
        name="upload",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now - 1000,
        end_time_unix_nano=now,
        attributes=[
            common_pb2.KeyValue(
                key="payload", value=common_pb2.AnyValue(string_value="g" * (size - 200))
            )
        ],
    )
    resource = resource_pb2.Resource(
        attributes=[
            common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value=service))
        ]
    )
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource, scope_spans=[trace_pb2.ScopeSpans(spans=[span])]
            )
        ]
    )


def grpc_export(
    target: str, request: trace_service_pb2.ExportTraceServiceRequest, timeout: float = 60
) -> grpc.StatusCode:
    """One Export call on a channel of its own (its own connection): the status it ended with."""
    options = [("grpc.max_send_message_length", 64 * MIB)]
    with grpc.insecure_channel(target, options=options) as channel:
        try:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


# --- what the collector shows ----------------------------------------------------------------


def calls_series(spanmetrics_url: str) -> list[dict[str, str]]:
    """The label sets of every span-metric calls series on the collector's /metrics."""
    return [labels for name, labels, _ in scrape(spanmetrics_url) if name == CALLS]


def of_service(series: list[dict[str, str]], service: str) -> list[dict[str, str]]:
    return [labels for labels in series if labels.get("service_name") == service]


def has_overflow(series: list[dict[str, str]]) -> bool:
    return any(labels.get(OVERFLOW) == "true" for labels in series)


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))


class PeakRss:
    """Samples a process's resident memory every 20 ms while the ``with`` block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before_mib = rss_kib(pid) / 1024
        self.peak_mib = self.before_mib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_mib = max(self.peak_mib, rss_kib(self.pid) / 1024)
            except OSError:
                return
            time.sleep(0.02)

    @property
    def growth_mib(self) -> float:
        return round(self.peak_mib - self.before_mib, 1)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(1)  # what the last requests left is still being collected
        self._stop.set()
        self._thread.join(timeout=5)
