"""Self time: what a span spent on its own, not waiting for a child; for a trace's
statistics and for two traces compared."""

from __future__ import annotations

from trace_analysis.model.results import WaterfallRow


def self_times(rows: list[WaterfallRow]) -> list[int]:
    """Each row's self time (µs): its duration less the part its children cover (each child
    clipped to it). ``rows`` are in waterfall order, parents first, so a row's parent is the
    nearest row before it one level up."""
    covered: list[list[tuple[int, int]]] = [[] for _ in rows]
    stack: list[int] = []
    for index, row in enumerate(rows):
        while stack and rows[stack[-1]].depth >= row.depth:
            stack.pop()
        if stack:
            covered[stack[-1]].append((row.start_us, row.start_us + row.duration_us))
        stack.append(index)
    result = []
    for row, spans in zip(rows, covered, strict=True):
        start, end = row.start_us, row.start_us + row.duration_us
        busy, reach = 0, start
        for low, high in sorted(spans):
            low, high = max(low, reach), min(high, end)
            if high > low:
                busy, reach = busy + high - low, high
        result.append(row.duration_us - busy)
    return result
