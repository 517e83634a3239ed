"""What the analysis produces: per-trace findings, the summary, the report.

Times inside the analysis are integer microseconds, as Jaeger stores them; the report
renderers convert to milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Criteria:
    """What makes a trace worth reporting."""

    threshold_us: int | None  # slow when root span duration > this; None: latency not judged
    errors_only: bool = False
    # --slow-by span: slow is judged on the longest span of this service and/or operation
    # instead of the root; ``selected``: the user picked a service/operation (so the report
    # says what slow was judged on)
    span_service: str | None = None
    span_operation: str | None = None
    selected: bool = False

    @property
    def by_span(self) -> bool:
        return self.span_service is not None or self.span_operation is not None


@dataclass(slots=True)
class ErrorOrigin:
    """The first failing span in causal order: a failing span with no failing descendant."""

    span_id: str
    service: str
    operation: str
    message: str
    http_status: int | None
    error_spans: int  # how many spans of the trace failed in all
    instance: str = ""  # its process's service.instance.id ("" when the data has none)
    # set when that instance stands out among its service's (see InstanceFinding)
    outlier: InstanceFinding | None = None


@dataclass(slots=True)
class PathStep:
    """A span on the critical path and the time it alone accounts for there."""

    span_id: str
    service: str
    operation: str
    start_us: int  # offset from the trace's root start
    self_us: int


@dataclass(slots=True)
class Culprit:
    """The service and operation with the most self time on the critical path."""

    service: str
    operation: str
    self_us: int
    share: float  # of the trace latency, 0..1


@dataclass(slots=True)
class Fault:
    """An injected fault a span declared with ``fault.*`` attributes."""

    span_id: str
    service: str
    operation: str
    kind: str
    value: str


@dataclass(slots=True)
class SkewFix:
    """A span (and its process's subtree) shifted to fit inside its caller's span."""

    span_id: str
    service: str
    shift_us: int


@dataclass(slots=True)
class WaterfallRow:
    """One bar of a waterfall (HTML, ``--trace``); kept only when a renderer needs it."""

    span_id: str
    depth: int
    service: str
    operation: str
    start_us: int  # offset from the trace start
    duration_us: int
    error: bool
    on_critical_path: bool
    http_status: int | None = None


@dataclass(slots=True)
class TraceResult:
    """Everything the report says about one flagged trace."""

    trace_id: str
    start_us: int  # epoch µs of the root span
    root_service: str
    root_operation: str
    latency_us: int  # root span duration: what the caller waited for
    judged_us: int | None  # --slow-by span: the longest selected span, what slow was judged on
    end_to_end_us: int  # first span start to last span end, async work included
    span_count: int
    services: list[str]
    slow: bool
    error: bool
    incomplete: bool
    notes: list[str] = field(default_factory=list)
    error_origin: ErrorOrigin | None = None
    culprit: Culprit | None = None
    critical_path: list[PathStep] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    skew: list[SkewFix] = field(default_factory=list)
    waterfall: list[WaterfallRow] | None = None


@dataclass(slots=True)
class Percentiles:
    count: int
    p50_us: float
    p95_us: float
    p99_us: float
    max_us: int


@dataclass(slots=True)
class GroupStats:
    """Latency percentiles and error rate of one service or one operation."""

    service: str
    operation: str | None
    latency: Percentiles
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.latency.count if self.latency.count else 0.0


@dataclass(slots=True)
class InstanceStats:
    """Every span of one process (``service.instance.id``) of a service that ran as several."""

    service: str
    instance: str
    latency: Percentiles  # of its spans' durations, µs
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.latency.count if self.latency.count else 0.0


@dataclass(slots=True)
class InstanceFinding:
    """An instance whose error rate or p95 stands out from its peers' (the other instances of
    its service, their spans pooled): trace_analysis.analyses.instances says when."""

    service: str
    instance: str
    measure: Literal["errors", "p95"]
    value: float  # the instance's error rate (0..1) or p95 (µs)
    peers_value: float  # the same of its peers pooled
    peers: int  # how many other instances
    p_value: float  # one-sided: Fisher's exact test (errors), Mann-Whitney U (p95)


@dataclass(slots=True)
class Summary:
    traces: int
    spans: int
    slow: int
    errors: int
    flagged: int
    incomplete: int
    latency: Percentiles  # of trace latency (root span duration)
    services: list[GroupStats]  # per service: its entry spans (the requests it served)
    operations: list[GroupStats]  # per service and operation: every span
    # per instance, of the services seen with more than one (none: nothing to compare)
    instances: list[InstanceStats] = field(default_factory=list)
    instance_findings: list[InstanceFinding] = field(default_factory=list)


@dataclass(slots=True)
class Source:
    """Where the traces came from, for the report header and the Jaeger links."""

    kind: str  # "jaeger" or "file"
    jaeger_url: str
    input_path: str | None = None
    service: str | None = None
    operation: str | None = None
    lookback: str | None = None
    start_us: int | None = None
    end_us: int | None = None
    queries: int = 0
    api: str | None = None  # the Jaeger query API that answered: "v3" or "v1"
    trace_ids: list[str] | None = None  # --trace: the traces asked for
    # where reports link each trace, <link_base>/trace/<id>; None: Jaeger's UI at jaeger_url
    link_base: str | None = None
    # why this Jaeger was read when no --jaeger-url named it (cli_common.jaeger_to_read)
    jaeger_chosen: str | None = None


@dataclass(slots=True)
class Report:
    source: Source
    criteria: Criteria
    summary: Summary
    traces: list[TraceResult]  # flagged traces, slowest first
    warnings: list[str]
    generated_at: str
    truncated: bool = False  # stopped at --limit
