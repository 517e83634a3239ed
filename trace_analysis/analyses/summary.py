"""Aggregates over every analyzed trace: counts, rates, and latency percentiles.

Durations are kept in compact ``array('q')`` buffers (8 bytes each rather than a Python int
object per value), so exact percentiles over a few million spans stay cheap in memory.
"""

from __future__ import annotations

from array import array

from trace_analysis.formats.jaeger import Span
from trace_analysis.model.results import GroupStats, Percentiles, Summary


class SummaryBuilder:
    """Fed one trace at a time by the analysis; :meth:`finish` computes the summary."""

    def __init__(self) -> None:
        self.traces = 0
        self.spans = 0
        self.slow = 0
        self.errors = 0
        self.flagged = 0
        self.incomplete = 0
        self.latencies = array("q")
        # service -> (durations of the requests it served, how many failed)
        self._services: dict[str, tuple[array, list[int]]] = {}
        # (service, operation) -> (durations of every span, how many failed)
        self._operations: dict[tuple[str, str], tuple[array, list[int]]] = {}

    def add_trace(
        self,
        spans: list[Span],
        latency_us: int,
        slow: bool,
        error: bool,
        flagged: bool,
        incomplete: bool,
    ) -> None:
        self.traces += 1
        self.spans += len(spans)
        self.slow += slow
        self.errors += error
        self.flagged += flagged
        self.incomplete += incomplete
        self.latencies.append(latency_us)
        operations = self._operations
        services = self._services
        for span in spans:
            service = span.service
            key = (service, span.operation)
            group = operations.get(key)
            if group is None:
                group = operations[key] = (array("q"), [0])
            group[0].append(span.duration)
            parent = span.parent
            # an entry span, a request this service served: a root (not an orphan, whose
            # caller is unknown), or a span called from another process
            entry = span.parent_id is None if parent is None else parent.clock != span.clock
            served = None
            if entry:
                served = services.get(service)
                if served is None:
                    served = services[service] = (array("q"), [0])
                served[0].append(span.duration)
            if error and span.error:
                group[1][0] += 1
                if served is not None:
                    served[1][0] += 1

    def finish(self) -> Summary:
        services = [
            GroupStats(name, None, percentiles(durations), failed[0])
            for name, (durations, failed) in sorted(self._services.items())
        ]
        operations = [
            GroupStats(service, operation, percentiles(durations), failed[0])
            for (service, operation), (durations, failed) in sorted(self._operations.items())
        ]
        return Summary(
            traces=self.traces,
            spans=self.spans,
            slow=self.slow,
            errors=self.errors,
            flagged=self.flagged,
            incomplete=self.incomplete,
            latency=percentiles(self.latencies),
            services=services,
            operations=operations,
        )


def percentiles(values: array) -> Percentiles:
    """p50/p95/p99 by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return Percentiles(0, 0.0, 0.0, 0.0, 0)
    ordered = sorted(values)
    return Percentiles(
        len(ordered),
        _rank(ordered, 50),
        _rank(ordered, 95),
        _rank(ordered, 99),
        ordered[-1],
    )


def _rank(ordered: list[int], pct: float) -> float:
    position = (len(ordered) - 1) * pct / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
