"""When a difference between two samples of spans counts: the thresholds the comparison with a
baseline (:mod:`trace_analysis.analyses.compare`) and the per-instance view
(:mod:`trace_analysis.analyses.instances`) share, so both call the same change significant."""

from __future__ import annotations

DEFAULT_MIN_CHANGE = 0.20  # relative change of p50 or p95 that counts
DEFAULT_MIN_CHANGE_US = 1_000  # and absolute: below 1 ms, scheduling noise on a busy host
ALPHA = 0.01  # significance level of the tests (Mann-Whitney U, Fisher's exact test)


def relative(before: float, after: float) -> float | None:
    """``after`` relative to ``before`` (0.25: 25% more); None when ``before`` is 0."""
    return (after - before) / before if before else None
