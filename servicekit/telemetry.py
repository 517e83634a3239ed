"""OpenTelemetry setup, configured only from the standard ``OTEL_*`` environment variables.

Each service builds its own :class:`Telemetry` (its own ``TracerProvider`` and resource) rather
than relying on the process-global provider alone. That keeps the production path identical to
the in-process test path, where four services share one interpreter but must keep four
``service.name`` values.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.instrumentation.propagators import (
    TraceResponsePropagator,
    set_global_response_propagator,
)
from opentelemetry.sdk.environment_variables import (
    OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_BSP_EXPORT_TIMEOUT,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_SCHEDULE_DELAY,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)

from servicekit.export import RetryingSpanExporter
from servicekit.sampling import EdgeSampler

DEFAULT_ENVIRONMENT = "local"

# Where this project's default differs from the SDK's (each documented in .env.example):
# - Attribute values are cut to 4096 characters (SDK: unlimited). A client controls several of
#   them (User-Agent, url.path, url.query), and Jaeger's Badger storage refuses a whole span whose
#   index key, which holds a tag value, passes 65,000 bytes.
# - The queue holds 8192 spans (SDK: 2048): 100 s of a service's spans at 20 orders/s (4 spans
#   per order per service), so a 30 s collector outage fits with room to spare. About 1.2 kB
#   each (measured), so at most ~10 MiB per service.
# - OTEL_BSP_EXPORT_TIMEOUT ("maximum time to export a batch"; the SDK 1.45 ignores it) is how
#   long one batch is retried while the collector refuses it (servicekit/export.py).
# - Spans are exported every 200 ms (SDK: 5000): with the collector's 200 ms batching a trace is
#   queryable in Jaeger within about a second of the response.
SDK_DEFAULTS = {
    OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: 4096,
    OTEL_BSP_MAX_QUEUE_SIZE: 8192,
    OTEL_BSP_EXPORT_TIMEOUT: 60_000,
    OTEL_BSP_SCHEDULE_DELAY: 200,
}
# The span flush at shutdown gives up after this long (compose's stop_grace_period of 20 s
# covers uvicorn's 10 s graceful stop plus this).
SHUTDOWN_FLUSH_SECONDS = 5.0


def configure_process() -> None:
    """What every instrumentation in the process shares; :meth:`Telemetry.create` calls it
    before any instrumentor runs (importing this module changes nothing).

    - The current (stable) HTTP and database semantic conventions (``http.request.method``,
      ``url.full``, ``db.system.name`` ...), unless ``OTEL_SEMCONV_STABILITY_OPT_IN`` says
      otherwise: the instrumentations read it once, when the first of them instruments.
    - W3C Trace Context Level 2: every response carries ``traceresponse``, so a caller can
      find its trace.
    """
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http,database")
    set_global_response_propagator(TraceResponsePropagator())


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true`` turns every span into a no-op (used by the overhead benchmark)."""
    return os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true"


def build_resource(default_service_name: str, service_version: str) -> Resource:
    """Resource with the attributes every span of the stack carries (docs/architecture.md).

    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` win over the defaults given here, as the
    specification requires; ``service.instance.id`` is unique per process so restarts and
    replicas are distinguishable in Jaeger.
    """
    defaults = Resource(
        {
            "service.name": default_service_name,
            "service.version": service_version,
            "deployment.environment.name": DEFAULT_ENVIRONMENT,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        }
    )
    from_env = Resource.create({})  # reads OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
    env_attrs = dict(from_env.attributes)
    if "OTEL_SERVICE_NAME" not in os.environ and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        env_attrs.pop("service.name", None)  # the SDK's "unknown_service" fallback
    merged = defaults.merge(Resource(env_attrs))
    return HashedResource(merged.attributes, merged.schema_url)


class HashedResource(Resource):
    """A :class:`Resource` whose hash is computed once.

    ``Resource.__hash__`` serialises every attribute to sorted JSON on each call, and the OTLP
    encoder hashes the resource of every span it encodes, to group spans by resource
    (opentelemetry-python issue 5577): about 5 us per span here. A resource never changes after
    it is made, so the first hash is kept. Equality is ``Resource``'s own.
    """

    _hash: int | None = None

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = super().__hash__()
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


def sdk_setting(name: str) -> int:
    """An ``OTEL_*`` integer from the environment, else this project's default (``SDK_DEFAULTS``).

    Raises ``ValueError`` naming the variable when it is not a non-negative integer.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return SDK_DEFAULTS[name]
    if not raw.isdigit():
        raise ValueError(f"{name}={raw!r}: expected a non-negative integer")
    return int(raw)


def otlp_endpoint() -> str:
    """Where spans go, as the OTLP exporter resolves it (for log lines)."""
    return os.environ.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or os.environ.get(
        OTEL_EXPORTER_OTLP_ENDPOINT, "http://localhost:4317"
    )


def _otlp_exporter() -> RetryingSpanExporter:
    """OTLP/gRPC exporter (endpoint, headers, timeout and TLS from ``OTEL_EXPORTER_OTLP_*``),
    retrying a refused batch for ``OTEL_BSP_EXPORT_TIMEOUT`` milliseconds."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    retry_seconds = sdk_setting(OTEL_BSP_EXPORT_TIMEOUT) / 1000
    return RetryingSpanExporter(OTLPSpanExporter(), retry_seconds, otlp_endpoint())


class SpanCounter(SpanProcessor):
    """Counts the spans this process finished, so delivery can be checked end to end
    (services' count vs the collector's accepted count vs what Jaeger stored)."""

    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


@dataclass
class Telemetry:
    """The tracing handles one service needs: its provider, its tracer and its span count,
    and (OTLP export only) the processor and exporter whose outcome the shutdown reports."""

    provider: trace.TracerProvider
    tracer: trace.Tracer
    counter: SpanCounter
    processor: BatchSpanProcessor | None = None
    exporter: RetryingSpanExporter | None = None

    @classmethod
    def create(
        cls,
        service_name: str,
        service_version: str,
        exporter: SpanExporter | None = None,
        set_global: bool = True,
        public_edge: bool = False,
    ) -> Telemetry:
        """Build the provider for one service.

        In production the exporter is OTLP/gRPC behind a ``BatchSpanProcessor`` (queue size,
        delay and batch size from ``OTEL_BSP_*``): export runs on a background thread with a
        bounded queue, so a missing collector never blocks or slows a request. Tests pass an
        in-memory exporter, which gets a synchronous processor so assertions see every span.
        ``public_edge`` (the gateway): the service makes its own sampling decision for requests
        from outside instead of following the caller's ``sampled`` flag (``EdgeSampler``).
        """
        configure_process()
        counter = SpanCounter()
        processor = otlp = None
        if sdk_disabled():
            provider: trace.TracerProvider = trace.NoOpTracerProvider()
        else:
            # SpanLimits reads OTEL_(SPAN_)ATTRIBUTE_VALUE_LENGTH_LIMIT itself when one is set.
            length = None
            if OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT not in os.environ:
                length = SDK_DEFAULTS[OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT]
            sdk_provider = TracerProvider(
                resource=build_resource(service_name, service_version),
                span_limits=SpanLimits(max_attribute_length=length),
            )
            if public_edge:
                sdk_provider.sampler = EdgeSampler(sdk_provider.sampler)
            sdk_provider.add_span_processor(counter)
            if exporter is None:
                otlp = _otlp_exporter()
                processor = BatchSpanProcessor(
                    otlp,
                    max_queue_size=sdk_setting(OTEL_BSP_MAX_QUEUE_SIZE),
                    schedule_delay_millis=sdk_setting(OTEL_BSP_SCHEDULE_DELAY),
                )
                sdk_provider.add_span_processor(processor)
            else:
                sdk_provider.add_span_processor(SimpleSpanProcessor(exporter))
            provider = sdk_provider
        if set_global:
            trace.set_tracer_provider(provider)
        tracer = provider.get_tracer(service_name, service_version)
        return cls(provider, tracer, counter, processor, otlp)

    def shutdown(self) -> tuple[bool, str]:
        """Flush pending spans for at most ``SHUTDOWN_FLUSH_SECONDS`` and shut the provider
        down; called on SIGTERM via the app lifespan. Returns (every span exported?, what
        happened): how many of the spans this process finished were exported, and what became
        of the rest (dropped after failed exports, or still queued when the flush gave up)."""
        # The SDK's processor waits up to 30 s for its last export and takes no timeout (1.45):
        # past SHUTDOWN_FLUSH_SECONDS the exporter stops retrying, and refuses what is left.
        give_up = threading.Timer(SHUTDOWN_FLUSH_SECONDS, self._stop_retrying)
        give_up.daemon = True
        give_up.start()
        try:
            shutdown = getattr(self.provider, "shutdown", None)
            if shutdown is not None:
                shutdown()
        finally:
            give_up.cancel()
        if self.exporter is None:
            return True, "stopped"
        ended, exported = self.counter.ended, self.exporter.exported
        if exported >= ended:
            return True, f"stopped: all {ended} spans exported to {self.exporter.endpoint}"
        dropped = self.exporter.dropped
        return False, (
            f"stopped: {ended - exported} of {ended} spans NOT exported to "
            f"{self.exporter.endpoint} ({dropped} dropped after failed exports, "
            f"{ended - exported - dropped} still queued or dropped from the full queue)"
        )

    def _stop_retrying(self) -> None:
        if self.exporter is not None:
            self.exporter.stop_retrying()

    @property
    def export_counts(self) -> dict[str, int]:
        """``spans_exported`` / ``spans_dropped`` for ``/healthz`` (empty without OTLP export)."""
        if self.exporter is None:
            return {}
        return {"spans_exported": self.exporter.exported, "spans_dropped": self.exporter.dropped}
