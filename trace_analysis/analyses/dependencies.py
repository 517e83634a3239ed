"""The service map (Jaeger UI's ``/dependencies``): which service calls which, how often, and
how many of those calls failed, counted over the traces of a window.

An edge is a span whose parent is another service's span: one call from the parent's service
to the span's. Its calls fail when the called span failed (status ERROR, an ``error`` tag, a
server's 5xx). Jaeger's own dependencies API counts calls only; this also gives the error
rate, and needs no dependency job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from trace_analysis.analyses.instances import InstanceCounter
from trace_analysis.formats.jaeger import JaegerTrace
from trace_analysis.model.spans import build_spans


@dataclass(slots=True)
class Edge:
    caller: str
    callee: str
    calls: int = 0
    errors: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclass
class ServiceMap:
    """The edges of the traces counted, by (caller, callee); every service seen; the
    instances of each service, counted as the analyzer's report counts them."""

    edges: dict[tuple[str, str], Edge] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)
    traces: int = 0
    seen: set[str] = field(default_factory=set)
    instances: InstanceCounter = field(default_factory=InstanceCounter)

    def add(self, trace: JaegerTrace) -> None:
        """Count one trace's calls between services; a trace given again is skipped (a
        window read service by service finds a trace once per service in it)."""
        if trace.trace_id in self.seen:
            return
        self.seen.add(trace.trace_id)
        self.traces += 1
        spans, by_id, _ = build_spans(trace)
        self.instances.add(spans, by_id)
        for span in spans:
            self.services.add(span.service)
            parent = by_id.get(span.parent_id) if span.parent_id else None
            if parent is None or parent.service == span.service:
                continue
            key = (parent.service, span.service)
            edge = self.edges.get(key)
            if edge is None:
                edge = self.edges[key] = Edge(*key)
            edge.calls += 1
            edge.errors += span.error

    def add_all(self, traces: Iterable[JaegerTrace]) -> None:
        for trace in traces:
            self.add(trace)

    def layers(self) -> list[list[str]]:
        """The services in columns, callers left of callees (the longest call chain that
        reaches each; a loop of calls is cut where it closes)."""
        depth: dict[str, int] = {}
        callees: dict[str, list[str]] = {}
        called = {callee for _, callee in self.edges}
        for caller, callee in self.edges:
            callees.setdefault(caller, []).append(callee)

        def visit(service: str, level: int, path: frozenset[str]) -> None:
            if depth.get(service, -1) >= level:
                return
            depth[service] = level
            for callee in callees.get(service, ()):
                if callee not in path:
                    visit(callee, level + 1, path | {callee})

        for service in sorted(self.services):
            if service not in called:
                visit(service, 0, frozenset({service}))
        for service in sorted(self.services):  # only reached through a loop
            depth.setdefault(service, 0)
        columns: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for service in sorted(depth):
            columns[depth[service]].append(service)
        return columns
