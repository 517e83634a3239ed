"""The public edge's own sampling decision (the gateway), whatever the caller's ``sampled`` flag.

A caller's ``traceparent`` ending in ``-00`` tells a parent-based sampler not to record. At the
public edge that let any client switch tracing off for its request while the gateway still
answered with the trace id (body ``traceId``, ``traceresponse``): an id Jaeger never gets, so a
failing order became invisible. :class:`EdgeSampler` keeps the caller's trace id
but decides as for a new trace (the configured ``OTEL_TRACES_SAMPLER``'s root decision), so with
the default ``parentbased_always_on`` every id the gateway returns is in Jaeger, and with a ratio
sampler the decision depends only on the trace id. A caller's ``sampled=01`` cannot force
recording either. Spans with a local parent, and the internal services, follow their parent.

The caller's ``tracestate`` is not kept: it is text the client chose (an email address, a
token), and a span's trace state is exported with it (Jaeger shows it as ``w3c.tracestate``)
and forwarded to every service behind. No participant of this stack reads a vendor entry, so
the public edge starts the trace state empty (W3C Trace Context allows dropping entries); with
it goes the amplification of an 8 kB tracestate forwarded to every hop.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes


class EdgeSampler(Sampler):
    """Wraps the configured sampler; a remote parent's sampled flag does not count."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if not (parent.is_valid and parent.is_remote):
            return self.delegate.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        # Decide as for a root span of the same trace id (an empty context has no parent).
        decision = self.delegate.should_sample(Context(), trace_id, name, kind, attributes, links)
        return SamplingResult(decision.decision, decision.attributes, TraceState())

    def get_description(self) -> str:
        return f"EdgeSampler{{{self.delegate.get_description()}}}"
