"""The critical path of a trace: the chain of work the root span actually waited for.

Walking back from the root's end, at each point in time the span on the path is the one
whose last-finishing child ended most recently; time not covered by any such child is the
span's own ("self") time on the path. This is the algorithm of the Jaeger UI's critical path
view. Children the parent does not wait for (FOLLOWS_FROM, a consumer of a producer) are left
out, and children are first clipped to their parent's window, so asynchronous work that outlives
its caller, or residual clock skew, never makes the path longer than the root span.
"""

from __future__ import annotations

from trace_analysis.formats.jaeger import Span
from trace_analysis.model.results import Culprit, PathStep


def critical_path(root: Span) -> list[tuple[Span, int, int]]:
    """Segments ``(span, start, end)`` of the critical path, latest first, covering the root."""
    segments: list[tuple[Span, int, int]] = []
    windows: dict[int, tuple[int, int]] = {id(root): (root.start, root.end)}
    # per span visited: its children clipped to its window, latest end first, and how many of
    # them are already known to end after the (only ever decreasing) bound
    candidates: dict[int, tuple[list[tuple[int, int, Span]], list[int]]] = {}
    span = root
    bound = root.end
    while True:
        lo, hi = windows[id(span)]
        entry = candidates.get(id(span))
        if entry is None:
            entry = candidates[id(span)] = (_clipped_children(span, lo, hi), [0])
        ordered, cursor = entry
        while cursor[0] < len(ordered) and ordered[cursor[0]][0] > bound:
            cursor[0] += 1
        if cursor[0] < len(ordered):
            c_end, c_start, child = ordered[cursor[0]]
            cursor[0] += 1
            windows[id(child)] = (c_start, c_end)
            if c_end < bound:
                segments.append((span, c_end, bound))
            span, bound = child, c_end
            continue
        if lo < bound:
            segments.append((span, lo, bound))
        if span is root:
            return segments
        bound = lo
        span = span.parent  # type: ignore[assignment]  # spans below root have a parent


def _clipped_children(span: Span, lo: int, hi: int) -> list[tuple[int, int, Span]]:
    """Children the span waits for, clipped to ``[lo, hi]`` (empty ones dropped), latest end
    first; of equal ends, the earliest start (the longer one) first.

    A FOLLOWS_FROM child and a CONSUMER child of a PRODUCER span run on their own: the parent
    does not wait for them (as in the Jaeger UI's critical path)."""
    clipped = []
    producer = span.kind == "producer"
    for child in span.children or ():
        if child.follows or (producer and child.kind == "consumer"):
            continue
        c_start = child.start if child.start > lo else lo
        c_end = child.end if child.end < hi else hi
        if c_end > c_start:
            clipped.append((c_end, c_start, child))
    clipped.sort(key=lambda item: (-item[0], item[1]))
    return clipped


def path_steps(segments: list[tuple[Span, int, int]], origin_us: int) -> list[PathStep]:
    """One step per span on the path, in the order the spans started, with its self time."""
    steps: dict[int, PathStep] = {}
    for span, start, end in segments:
        step = steps.get(id(span))
        if step is None:
            steps[id(span)] = PathStep(
                span.span_id, span.service, span.operation, span.start - origin_us, end - start
            )
        else:
            step.self_us += end - start
    return sorted(steps.values(), key=lambda step: step.start_us)


def culprit(steps: list[PathStep], latency_us: int) -> Culprit | None:
    """The service and operation with the most self time on the path (ties: the earliest)."""
    totals: dict[tuple[str, str], int] = {}
    for step in steps:
        key = (step.service, step.operation)
        totals[key] = totals.get(key, 0) + step.self_us
    if not totals:
        return None
    (service, operation), self_us = max(totals.items(), key=lambda item: item[1])
    share = self_us / latency_us if latency_us > 0 else 0.0
    return Culprit(service, operation, self_us, min(share, 1.0))
