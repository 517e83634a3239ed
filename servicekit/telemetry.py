"""OpenTelemetry setup, configured only from the standard ``OTEL_*`` environment variables.

Each service builds its own :class:`Telemetry` (its own ``TracerProvider`` and resource) rather
than relying on the process-global provider alone. That keeps the production path identical to
the in-process test path, where four services share one interpreter but must keep four
``service.name`` values.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.instrumentation.propagators import (
    TraceResponsePropagator,
    set_global_response_propagator,
)
from opentelemetry.sdk.environment_variables import OTEL_SDK_DISABLED
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)

# Emit the current (stable) HTTP and database semantic conventions: http.request.method,
# url.full, db.system.name, ... Must be set before any instrumentor reads it.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http,database")

# W3C Trace Context Level 2: every response carries `traceresponse` so a caller can find its trace.
set_global_response_propagator(TraceResponsePropagator())

DEFAULT_ENVIRONMENT = "local"


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
    return defaults.merge(Resource(env_attrs))


def _otlp_exporter() -> SpanExporter:
    """OTLP/gRPC exporter; endpoint, headers, timeout and TLS come from ``OTEL_EXPORTER_OTLP_*``."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


class SpanCounter(SpanProcessor):
    """Counts the spans this process finished, so delivery can be checked end to end
    (services' count vs the collector's accepted count vs what Jaeger stored)."""

    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


@dataclass
class Telemetry:
    """The tracing handles one service needs: its provider, its tracer and its span count."""

    provider: trace.TracerProvider
    tracer: trace.Tracer
    counter: SpanCounter

    @classmethod
    def create(
        cls,
        service_name: str,
        service_version: str,
        exporter: SpanExporter | None = None,
        set_global: bool = True,
    ) -> Telemetry:
        """Build the provider for one service.

        In production the exporter is OTLP/gRPC behind a ``BatchSpanProcessor`` (queue size,
        delay and batch size from ``OTEL_BSP_*``): export runs on a background thread with a
        bounded queue, so a missing collector never blocks or slows a request. Tests pass an
        in-memory exporter, which gets a synchronous processor so assertions see every span.
        """
        counter = SpanCounter()
        if sdk_disabled():
            provider: trace.TracerProvider = trace.NoOpTracerProvider()
        else:
            sdk_provider = TracerProvider(resource=build_resource(service_name, service_version))
            sdk_provider.add_span_processor(counter)
            if exporter is None:
                sdk_provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
            else:
                sdk_provider.add_span_processor(SimpleSpanProcessor(exporter))
            provider = sdk_provider
        if set_global:
            trace.set_tracer_provider(provider)
        tracer = provider.get_tracer(service_name, service_version)
        return cls(provider=provider, tracer=tracer, counter=counter)

    def shutdown(self) -> None:
        """Flush pending spans; called on SIGTERM via the app lifespan."""
        shutdown = getattr(self.provider, "shutdown", None)
        if shutdown is not None:
            shutdown()
