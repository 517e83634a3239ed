"""Clock skew: a callee timed by another process's clock, moved to fit inside its caller.

A callee cannot start before its caller sent the request, nor after its caller stopped
waiting for the answer. So a child timed by another clock that starts before its (already
corrected) parent, or a synchronous child (not a consumer, nor a FOLLOWS_FROM child, nor
the child of a producer: those may well start after their parent ended) that starts after
its parent ended, and is not longer than it, is centred in the parent as Jaeger's clock-skew
adjuster does (network latency assumed equal both ways); the spans of its process below it
move with it, and the shift is reported. A child that starts inside its parent and merely
ends after it is left alone: a server often finishes its span after the response left, and
a caller may give up first (a timeout); the critical path clips such overhangs anyway.
"""

from __future__ import annotations

from trace_analysis.formats.jaeger import Span
from trace_analysis.model.results import SkewFix


def skew_shift(span: Span, parent: Span) -> int:
    """How far (µs, signed) to move ``span``, timed by another clock than ``parent``'s (already
    corrected), to fit inside it; 0 when it needs no move."""
    if span.duration > parent.duration:
        return 0  # cannot fit: no move would make it right
    early = span.start < parent.start
    if early or (span.start >= parent.end and _waited_for(span, parent)):
        return parent.start + (parent.duration - span.duration) // 2 - span.start
    return 0


def _waited_for(span: Span, parent: Span) -> bool:
    """Whether ``parent`` waited for ``span`` (a call), rather than handing it work to do later
    (a message, a FOLLOWS_FROM reference)."""
    return not span.follows and span.kind != "consumer" and parent.kind != "producer"


def skew_note(fixes: list[SkewFix]) -> str:
    """The trace's note on the shifts made: which services, and the largest shift."""
    shifted = sorted({fix.service for fix in fixes})
    worst = max(fixes, key=lambda fix: abs(fix.shift_us))
    return (
        f"clock skew: {', '.join(shifted)} shifted to fit inside the calling span "
        f"(largest shift {worst.shift_us / 1000:+.1f} ms)"
    )
