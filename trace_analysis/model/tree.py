"""The span tree of one trace: parents linked, the root chosen, clock skew corrected.

Real traces are not always well formed, and the analyzer must still say something useful
about them: spans whose parent never arrived (orphans), traces whose root is missing, traces
with several roots, parent references that loop, and services whose clocks disagree. Each
of these is repaired the least surprising way and described in a note on the trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trace_analysis.formats.jaeger import Span
from trace_analysis.model.results import SkewFix
from trace_analysis.model.skew import skew_note, skew_shift


@dataclass(slots=True)
class SpanTree:
    """Linked spans and their root.

    The rest (depth-first order, clock skew, loops) is :meth:`walk`'s, done only for traces
    the report shows: deciding whether a trace is flagged, and counting it, needs none of it.
    So a trace whose parent references loop, but is not flagged, is not counted incomplete.
    """

    spans: list[Span]
    root: Span
    tops: list[Span]  # spans without a parent in the trace, earliest first
    parents: list[Span]  # spans with children
    incomplete: bool = False
    notes: list[str] = field(default_factory=list)
    skew: list[SkewFix] = field(default_factory=list)
    _order: list[Span] | None = None

    def unlink(self) -> None:
        """Cut the parent <-> children cycles, so that reference counting alone frees the
        spans (the analysis pauses the cyclic garbage collector)."""
        for span in self.parents:
            span.children = None
        self.parents = []

    def walk(self) -> list[Span]:
        """Every span, parents before children, with clock skew corrected (once)."""
        if self._order is None:
            self._order = self._walk_all()
        return self._order

    def _walk_all(self) -> list[Span]:
        order = _walk(self.tops, self.skew)
        if len(order) < len(self.spans):
            # parent references that form a loop: no top reaches them; break each loop at
            # its earliest span so that every span is still walked once
            self.incomplete = True
            reached = {id(span) for span in order}
            looped = sorted((s for s in self.spans if id(s) not in reached), key=_root_rank)
            self.notes.append(f"{len(looped)} span(s) in a loop of parent references; loop broken")
            for span in looped:
                if id(span) in reached:
                    continue
                if span.parent is not None and span.parent.children:
                    span.parent.children.remove(span)
                    span.parent = None
                extra = _walk([span], self.skew)
                reached.update(id(s) for s in extra)
                order.extend(extra)
        if self.skew:
            self.notes.append(skew_note(self.skew))
        return order


def build_tree(spans: list[Span], by_id: dict[str, Span] | None = None) -> SpanTree:
    """Link ``spans`` (not empty; ``by_id`` indexes them, if at hand) into a tree and choose
    the root."""
    if by_id is None:
        by_id = {span.span_id: span for span in spans}
    roots: list[Span] = []
    orphans: list[Span] = []
    parents: list[Span] = []
    untimed: list[Span] = []
    for span in spans:
        if span.start <= 0:
            untimed.append(span)
        parent_id = span.parent_id
        if parent_id is None:
            roots.append(span)
            continue
        parent = by_id.get(parent_id)
        if parent is None or parent is span:
            orphans.append(span)
            continue
        span.parent = parent
        if parent.children is None:
            parent.children = [span]
            parents.append(parent)
        else:
            parent.children.append(span)

    notes: list[str] = []
    if untimed:
        _place_untimed(untimed)
        notes.append(
            f"{len(untimed)} span(s) without a start time: placed over their children's time "
            "(not clock skew; the children keep their own times)"
        )
    incomplete = False
    if roots:
        root = min(roots, key=_root_rank)
        if len(roots) > 1:
            notes.append(
                f"{len(roots)} root spans; latency is taken from the earliest, "
                f"{root.service} {root.operation!r}"
            )
    else:
        incomplete = True
        root = min(orphans or spans, key=_root_rank)
        notes.append(
            f"root span missing: latency is taken from the earliest top span, "
            f"{root.service} {root.operation!r}; trace incomplete"
        )
    if orphans and roots:
        incomplete = True
        notes.append(f"{len(orphans)} span(s) whose parent is missing; trace incomplete")
    for orphan in orphans:
        orphan.parent = None  # a span that is its own parent

    tops = sorted(roots + orphans, key=_root_rank)
    return SpanTree(spans, root, tops, parents, incomplete, notes)


def _place_untimed(untimed: list[Span]) -> None:
    """Give each span without a start time the window of its timed children (bottom-up), else
    its parent's start and no length: such a span says nothing about clocks, so it must not
    be "corrected" by decades and drag its children along."""
    pending = {id(span) for span in untimed}
    visiting: set[int] = set()

    def place(span: Span) -> None:
        visiting.add(id(span))
        children = span.children or ()
        for child in children:
            if id(child) in pending and id(child) not in visiting:
                place(child)
        timed = [child for child in children if id(child) not in pending]
        if timed:
            start = min(child.start for child in timed)
            span.duration = max(max(child.end for child in timed) - start, span.duration)
            span.start = start
            pending.discard(id(span))

    for span in untimed:
        span.timed = False
        if id(span) in pending:
            place(span)
    for span in untimed:  # leaves: at the start of the nearest placed ancestor, no length
        if id(span) in pending:
            anchor = span.parent
            while anchor is not None and id(anchor) in pending:
                anchor = anchor.parent
            if anchor is not None:
                span.start = anchor.start
                span.duration = 0


def _root_rank(span: Span) -> tuple[int, int]:
    """Earliest first; of equal starts, the longest (the outermost)."""
    return (span.start, -span.duration)


def _walk(tops: list[Span], fixes: list[SkewFix]) -> list[Span]:
    """Every span under ``tops``, parents first (depth first), with clock skew corrected on the
    way (:func:`trace_analysis.model.skew.skew_shift`); a span moves with its process's
    parent, so one process's spans never move relative to each other."""
    order: list[Span] = []
    shift: dict[int, int] = {}
    stack = list(reversed(tops))
    while stack:
        span = stack.pop()
        order.append(span)
        parent = span.parent
        if parent is not None:
            if parent.clock == span.clock or not span.timed:
                delta = shift.get(id(parent), 0) if span.timed else 0
            else:
                delta = skew_shift(span, parent)
                if delta:
                    fixes.append(SkewFix(span.span_id, span.service, delta))
            if delta:
                shift[id(span)] = delta
                span.start += delta
        children = span.children
        if children:
            if len(children) > 1:
                children.sort(key=_root_rank)  # in the order they started, as a waterfall
            stack.extend(reversed(children))
    return order
