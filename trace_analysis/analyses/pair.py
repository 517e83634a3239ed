"""Two traces side by side (Jaeger UI's ``/trace/<a>...<b>``): their spans matched by service
and operation, what only one has, and what got slower.

Spans are matched in the order the waterfall draws them (parents first, siblings by start):
the n-th ``inventory-service SELECT stock`` of one trace with the n-th of the other. A span
of a (service, operation) one trace has more often than the other is "only in" that trace.
What got slower is judged by self time (:mod:`trace_analysis.analyses.self_time`), so that a
span that waited longer for a slower child is not named with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from trace_analysis.analyses.self_time import self_times
from trace_analysis.model.results import TraceResult, WaterfallRow


@dataclass(slots=True)
class SpanPair:
    """One span of either trace or both: its durations (µs) and failures in each."""

    service: str
    operation: str
    depth: int
    a: WaterfallRow | None
    b: WaterfallRow | None
    a_self_us: int = 0
    b_self_us: int = 0

    @property
    def change_us(self) -> int | None:
        """How much longer the span took in ``b`` (negative: shorter); None if unmatched."""
        if self.a is None or self.b is None:
            return None
        return self.b.duration_us - self.a.duration_us

    @property
    def self_change_us(self) -> int | None:
        """How much longer the span spent on its own in ``b``; None if unmatched."""
        if self.a is None or self.b is None:
            return None
        return self.b_self_us - self.a_self_us


def pair_spans(a: TraceResult, b: TraceResult) -> list[SpanPair]:
    """Every span of the two traces, matched (see the module doc), in ``a``'s waterfall
    order, then what only ``b`` has in its own order."""
    rows_a, rows_b = a.waterfall or [], b.waterfall or []
    own = {
        id(row): time
        for rows in (rows_a, rows_b)
        for row, time in zip(rows, self_times(rows), strict=True)
    }
    waiting: dict[tuple[str, str], list[WaterfallRow]] = {}
    for row in rows_b:
        waiting.setdefault((row.service, row.operation), []).append(row)
    pairs = []
    for row in rows_a:
        others = waiting.get((row.service, row.operation))
        other = others.pop(0) if others else None
        pairs.append(
            SpanPair(
                row.service, row.operation, row.depth, row, other,
                own[id(row)], own[id(other)] if other is not None else 0,
            )
        )  # fmt: skip
    taken = {id(pair.b) for pair in pairs if pair.b is not None}
    for row in rows_b:
        if id(row) not in taken:
            pairs.append(
                SpanPair(row.service, row.operation, row.depth, None, row, 0, own[id(row)])
            )
    return pairs


def slower(pairs: list[SpanPair], at_least_us: int = 1000, share: float = 0.2) -> list[SpanPair]:
    """The matched spans whose self time grew by at least ``at_least_us`` and ``share`` of
    their duration in ``a``, most first."""
    found = [
        pair
        for pair in pairs
        if pair.a is not None
        and (pair.self_change_us or 0) >= max(at_least_us, share * pair.a.duration_us)
    ]
    return sorted(found, key=lambda pair: -(pair.self_change_us or 0))
