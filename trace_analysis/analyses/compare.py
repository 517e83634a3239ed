"""What changed between two sets of traces, and where: per-operation statistics on both sides,
significance tests, and attribution of a regressed entry operation to the operations whose
critical-path self time grew.

A side (baseline or candidate) is collected in one pass over its traces
(:class:`SideCollector`), keeping per (service, operation) the span durations, the failures
and their messages, and the self time on the critical path; :func:`compare` then judges each
operation. scipy (Mann-Whitney U, Fisher's exact test) is imported only there, so the
analyzer's other modes never pay for it.

Verdicts, per operation present on both sides with at least ``min_samples`` spans on each:

* latency regressed: p50 or p95 grew by more than ``min_change`` (relative) and more than
  ``min_change_us`` (absolute), and a two-sided Mann-Whitney U test says the candidate's
  durations tend to be larger with p < ``alpha``; improved is the mirror image;
* errors regressed: the error rate grew and a two-sided Fisher's exact test on the 2x2 table
  (failed / fine, baseline / candidate) gives p < ``alpha``; improved is the mirror image.
"""

from __future__ import annotations

import gc
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from trace_analysis.analyses.analyzer import error_message
from trace_analysis.analyses.critical_path import critical_path
from trace_analysis.analyses.significance import (
    ALPHA,
    DEFAULT_MIN_CHANGE,
    DEFAULT_MIN_CHANGE_US,
    relative,
)
from trace_analysis.analyses.summary import percentiles
from trace_analysis.formats.jaeger import JaegerTrace, Span
from trace_analysis.model.results import Source
from trace_analysis.model.spans import build_spans
from trace_analysis.model.tree import build_tree

DEFAULT_MIN_CHANGE_TEXT = f"{DEFAULT_MIN_CHANGE:.0%}"  # the same, as --min-change takes it
DEFAULT_MIN_SAMPLES = 30  # spans per side; fewer: no verdict
MAX_MESSAGES = 20  # distinct error messages kept per operation and side
MAX_ATTRIBUTION = 5  # contributors listed per regressed entry operation
MIN_SHARE = 0.05  # ... each with at least this share of the largest one's growth

Key = tuple[str, str]  # (service, operation)
Verdict = Literal["regressed", "improved", "unchanged", "too_few_samples", "new", "gone"]


@dataclass(frozen=True, slots=True)
class CompareCriteria:
    """When a change counts; printed with every comparison."""

    min_change: float = DEFAULT_MIN_CHANGE
    min_change_us: int = DEFAULT_MIN_CHANGE_US
    min_samples: int = DEFAULT_MIN_SAMPLES
    alpha: float = ALPHA


@dataclass(slots=True)
class _Operation:
    """What one side keeps of one (service, operation)."""

    durations: array = field(default_factory=lambda: array("q"))
    errors: int = 0
    path_self_us: int = 0  # self time on the trace's critical path, summed over traces
    requests: int = 0  # spans that were entry spans (requests this service served)
    # of those requests: (service, operation) -> self time on the request's critical path
    request_path_us: dict[Key, int] = field(default_factory=dict)
    messages: Counter[str] = field(default_factory=Counter)


class SideCollector:
    """One side of a comparison, fed one trace at a time.

    ``service``/``operation`` keep only traces with a span of that service (and operation), as
    the analysis does. Traces seen twice are counted once.
    """

    def __init__(self, service: str | None = None, operation: str | None = None) -> None:
        self.service = service
        self.operation = operation
        self.traces = 0
        self.spans = 0
        self.operations: dict[Key, _Operation] = {}
        self._seen: set[str] = set()

    def feed(self, traces: Iterable[JaegerTrace]) -> None:
        # spans link both ways and are unlinked after each trace (see analysis.Analyzer.feed)
        collecting = gc.isenabled()
        gc.disable()
        try:
            for trace in traces:
                self.add(trace)
        finally:
            if collecting:
                gc.enable()

    def after(self, traces: Iterable[JaegerTrace]) -> Iterator[JaegerTrace]:
        """Pass ``traces`` on, collecting each once its consumer asks for the next one.

        So another pass (the flagged-trace analysis) sees each trace first, and a consumer
        that stops early (``--limit``) stops this side at the same trace.
        """
        for trace in traces:
            yield trace
            self.add(trace)

    def add(self, trace: JaegerTrace) -> None:
        if trace.trace_id in self._seen:
            return
        self._seen.add(trace.trace_id)
        spans, by_id, _ = build_spans(trace)
        if not spans or not self._wanted(spans):
            return
        tree = build_tree(spans, by_id)
        try:
            tree.walk()  # clock skew corrected, loops broken: as the report's critical paths
            self._count(spans, tree.root)
        finally:
            tree.unlink()

    def _wanted(self, spans: list[Span]) -> bool:
        if self.service is None and self.operation is None:
            return True
        return any(
            (self.service is None or s.service == self.service)
            and (self.operation is None or s.operation == self.operation)
            for s in spans
        )

    def _count(self, spans: list[Span], root: Span) -> None:
        self.traces += 1
        self.spans += len(spans)
        operations = self.operations
        root_path = _self_times(root)
        for key, self_us in root_path.items():
            operations.setdefault(key, _Operation()).path_self_us += self_us
        for span in spans:
            key = (span.service, span.operation)
            op = operations.get(key)
            if op is None:
                op = operations[key] = _Operation()
            op.durations.append(span.duration)
            if span.error:
                op.errors += 1
                message = error_message(span)
                if message in op.messages or len(op.messages) < MAX_MESSAGES:
                    op.messages[message] += 1
            # an entry span, as summary.SummaryBuilder counts requests served
            parent = span.parent
            if span.parent_id is None if parent is None else parent.clock != span.clock:
                op.requests += 1
                path = root_path if span is root else _self_times(span)
                for step, self_us in path.items():
                    op.request_path_us[step] = op.request_path_us.get(step, 0) + self_us


def _self_times(top: Span) -> dict[Key, int]:
    """(service, operation) -> self time on the critical path of ``top``'s subtree."""
    totals: dict[Key, int] = {}
    for span, start, end in critical_path(top):
        key = (span.service, span.operation)
        totals[key] = totals.get(key, 0) + end - start
    return totals


@dataclass(slots=True)
class SideStats:
    """One operation on one side. Times in µs; ``path_self_us`` is the mean self time on the
    trace's critical path per call."""

    count: int
    errors: int
    p50_us: float
    p95_us: float
    p99_us: float
    path_self_us: float
    requests: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0


@dataclass(slots=True)
class Contribution:
    """How much one operation's critical-path self time, per request of a regressed entry
    operation, changed (means, µs): the changes of all contributors add up to the change of
    the entry operation's mean latency."""

    service: str
    operation: str
    baseline_us: float
    candidate_us: float

    @property
    def change_us(self) -> float:
        return self.candidate_us - self.baseline_us


@dataclass(slots=True)
class OperationChange:
    service: str
    operation: str
    entry: bool  # its spans are requests the service served (entry spans)
    baseline: SideStats | None
    candidate: SideStats | None
    verdict: Verdict
    latency: Literal["regressed", "improved"] | None = None
    errors: Literal["regressed", "improved"] | None = None
    latency_p: float | None = None  # Mann-Whitney U, two-sided
    errors_p: float | None = None  # Fisher's exact test, two-sided
    attribution: list[Contribution] = field(default_factory=list)  # grown the most, first
    mean_change_us: float | None = None  # of the requests' latency: every contribution summed
    growth_us: float | None = None  # the positive contributions summed: what shares are of

    @property
    def regressed(self) -> bool:
        return self.verdict == "regressed"

    @property
    def reason(self) -> Literal["latency", "errors", "both"] | None:
        """What regressed (or, for an improvement, improved)."""
        want = "regressed" if self.verdict == "regressed" else "improved"
        latency, errors = self.latency == want, self.errors == want
        if self.verdict not in ("regressed", "improved"):
            return None
        return "both" if latency and errors else "latency" if latency else "errors"


@dataclass(slots=True)
class NewError:
    """An error message seen on the candidate side only."""

    service: str
    operation: str
    message: str
    count: int


@dataclass(slots=True)
class Comparison:
    baseline_source: Source
    criteria: CompareCriteria
    baseline_traces: int
    baseline_spans: int
    candidate_traces: int
    candidate_spans: int
    operations: list[OperationChange]  # regressions, improvements, then the rest
    new_errors: list[NewError]
    warnings: list[str] = field(default_factory=list)

    def count(self, verdict: Verdict) -> int:
        return sum(1 for op in self.operations if op.verdict == verdict)

    def unjudged(self) -> str | None:
        """Why this comparison supports no verdict at all (None when some operation was
        judged): a baseline or candidate with no traces (a mistyped window, a new stack), or
        no operation with enough spans on both sides."""
        if not self.baseline_traces:
            return "the baseline has no traces"
        if not self.candidate_traces:
            return "the candidate has no traces"
        if not any(op.verdict in ("regressed", "improved", "unchanged") for op in self.operations):
            return f"no operation has {self.criteria.min_samples} spans on both sides"
        return None


def compare(
    baseline: SideCollector,
    candidate: SideCollector,
    criteria: CompareCriteria,
    baseline_source: Source,
) -> Comparison:
    """Judge every operation seen on either side (see the module doc for the rules)."""
    from scipy.stats import fisher_exact, mannwhitneyu

    changes = []
    for key in sorted(baseline.operations.keys() | candidate.operations.keys()):
        before = baseline.operations.get(key)
        after = candidate.operations.get(key)
        change = OperationChange(
            key[0],
            key[1],
            bool((before and before.requests) or (after and after.requests)),
            _stats(before),
            _stats(after),
            "unchanged",
        )
        changes.append(change)
        if before is None or not before.durations:
            change.verdict = "new"
            continue
        if after is None or not after.durations:
            change.verdict = "gone"
            continue
        assert change.baseline is not None and change.candidate is not None
        if min(len(before.durations), len(after.durations)) < criteria.min_samples:
            change.verdict = "too_few_samples"
            continue
        test = mannwhitneyu(after.durations, before.durations, alternative="two-sided")
        change.latency_p = float(test.pvalue)
        larger = test.statistic / (len(after.durations) * len(before.durations)) > 0.5
        change.latency = _latency_verdict(
            change.baseline, change.candidate, larger, change.latency_p, criteria
        )
        if before.errors or after.errors:
            table = [
                [after.errors, len(after.durations) - after.errors],
                [before.errors, len(before.durations) - before.errors],
            ]
            change.errors_p = float(fisher_exact(table).pvalue)
            if change.errors_p < criteria.alpha:
                worse = change.candidate.error_rate > change.baseline.error_rate
                change.errors = "regressed" if worse else "improved"
        if "regressed" in (change.latency, change.errors):
            change.verdict = "regressed"
            if change.entry and before.requests and after.requests:
                change.attribution, change.mean_change_us, change.growth_us = _attribution(
                    before, after
                )
        elif "improved" in (change.latency, change.errors):
            change.verdict = "improved"
    order = {"regressed": 0, "improved": 1, "new": 2, "gone": 3, "too_few_samples": 4}
    changes.sort(key=lambda c: (order.get(c.verdict, 5), -_weight(c), c.service, c.operation))
    return Comparison(
        baseline_source,
        criteria,
        baseline.traces,
        baseline.spans,
        candidate.traces,
        candidate.spans,
        changes,
        _new_errors(baseline, candidate),
    )


def _stats(op: _Operation | None) -> SideStats | None:
    if op is None or not op.durations:
        return None
    p = percentiles(op.durations)
    return SideStats(
        p.count,
        op.errors,
        p.p50_us,
        p.p95_us,
        p.p99_us,
        op.path_self_us / p.count,
        op.requests,
    )


def _latency_verdict(
    before: SideStats, after: SideStats, larger: bool, p_value: float, criteria: CompareCriteria
) -> Literal["regressed", "improved"] | None:
    if p_value >= criteria.alpha:
        return None
    moved = [
        (after_us - before_us, relative(before_us, after_us))
        for before_us, after_us in ((before.p50_us, after.p50_us), (before.p95_us, after.p95_us))
    ]
    sign = 1 if larger else -1
    for absolute, rel in moved:
        if (
            sign * absolute > criteria.min_change_us
            and rel is not None
            and sign * rel > criteria.min_change
        ):
            return "regressed" if larger else "improved"
    return None


def _attribution(before: _Operation, after: _Operation) -> tuple[list[Contribution], float, float]:
    """The operations whose critical-path self time per request grew, most first; the change
    of the requests' mean latency (the sum of every operation's change, shrinkage included);
    and the growth (the sum of the changes that grew), which each contribution is a share of:
    a share of the net change could pass 100% when other operations got faster."""
    contributions = [
        Contribution(
            service,
            operation,
            before.request_path_us.get((service, operation), 0) / before.requests,
            after.request_path_us.get((service, operation), 0) / after.requests,
        )
        for service, operation in before.request_path_us.keys() | after.request_path_us.keys()
    ]
    total = sum(c.change_us for c in contributions)
    growth = sum(c.change_us for c in contributions if c.change_us > 0)
    grown = sorted(contributions, key=lambda c: (-c.change_us, c.service, c.operation))
    if not grown or grown[0].change_us <= 0:
        return [], total, growth
    floor = MIN_SHARE * grown[0].change_us
    return [c for c in grown[:MAX_ATTRIBUTION] if c.change_us >= floor], total, growth


def _weight(change: OperationChange) -> float:
    """Sort key within a verdict: the largest p50 change first; else the most spans."""
    if change.baseline is not None and change.candidate is not None:
        return abs(change.candidate.p50_us - change.baseline.p50_us)
    side = change.candidate or change.baseline
    return side.count if side is not None else 0


def _new_errors(baseline: SideCollector, candidate: SideCollector) -> list[NewError]:
    found = []
    for key, op in candidate.operations.items():
        known = baseline.operations.get(key)
        for message, count in op.messages.items():
            if known is None or message not in known.messages:
                found.append(NewError(key[0], key[1], message, count))
    found.sort(key=lambda e: (-e.count, e.service, e.operation, e.message))
    return found
