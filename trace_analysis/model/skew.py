"""Clock skew: a callee timed by another process's clock, moved to fit inside its caller.

A callee cannot start before its caller sent the request, whatever it does later. So a child
timed by another clock that starts before its (already corrected) parent, and is shorter than
it, is centred in the parent as Jaeger's clock-skew adjuster does (network latency assumed
equal both ways); the spans of its process below it move with it. A child that merely ends
after its parent is left alone: a server often finishes its span after the response left, and
a caller may give up first (a timeout); the critical path clips such overhangs anyway.
"""

from __future__ import annotations

from trace_analysis.formats.jaeger import Span
from trace_analysis.model.results import SkewFix


def skew_shift(span: Span, parent: Span) -> int:
    """How far (µs, signed) to move ``span``, timed by another clock than ``parent``'s (already
    corrected), to fit inside it; 0 when it needs no move."""
    if span.start < parent.start and span.duration <= parent.duration:
        return parent.start + (parent.duration - span.duration) // 2 - span.start
    return 0


def skew_note(fixes: list[SkewFix]) -> str:
    """The trace's note on the shifts made: which services, and the largest shift."""
    shifted = sorted({fix.service for fix in fixes})
    worst = max(fixes, key=lambda fix: abs(fix.shift_us))
    return (
        f"clock skew: {', '.join(shifted)} shifted to fit inside the calling span "
        f"(largest shift {worst.shift_us / 1000:+.1f} ms)"
    )
