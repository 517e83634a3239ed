"""``analyze_traces.py --baseline ...``: read both sides, compare, report, and the exit status.

The candidate is what the analyzer reads anyway (``--input`` or the live ``--lookback``
window) and gets the usual analysis too, so the JSON report keeps its shape and gains a
``comparison`` object. The baseline is a file (``--baseline``), the same live window shifted
back (``--baseline-offset``) or an explicit one (``--baseline-window START..END``).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from trace_analysis import cli_common as common
from trace_analysis.analyses.analyzer import Analyzer
from trace_analysis.analyses.compare import (
    CompareCriteria,
    Comparison,
    SideCollector,
    compare,
)
from trace_analysis.errors import AnalyzerError
from trace_analysis.formats.jaeger import JaegerTrace
from trace_analysis.model.results import Report, Source
from trace_analysis.reports.comparison import side_text
from trace_analysis.sources.files import iter_file_traces

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")


@dataclass(slots=True)
class CompareRequest:
    """What the command line asked for (see ``trace_analysis.cli``)."""

    baseline: str | None  # a file
    baseline_offset: str | None  # e.g. "1d"
    baseline_window: str | None  # "START..END", ISO 8601
    criteria: CompareCriteria
    threshold_us: int | None  # also flag the candidate's traces, as without a baseline
    errors_only: bool
    slow_by: common.SlowBy
    jaeger_url: str
    jaeger_chosen: str | None  # why this Jaeger, when no --jaeger-url named it
    api: str  # auto, v3 or v1 (see trace_analysis.sources.jaeger_api)
    service: str | None
    operation: str | None
    lookback: str
    limit: int | None
    page_size: int
    timeout: float
    input_path: str | None
    output_format: str
    output: Path | None
    fail_on: str | None
    top: int


def parse_min_change(text: str) -> float:
    """``20%`` (or ``20``) to 0.2."""
    match = _PERCENT.match(text)
    if not match:
        raise AnalyzerError(f"invalid --min-change {text!r}: give a percentage, e.g. 20%")
    return float(match.group(1)) / 100


def parse_window(text: str) -> tuple[int, int]:
    """``START..END`` (ISO 8601; without a zone: UTC) to epoch µs."""
    start_text, dots, end_text = text.partition("..")
    if not dots:
        raise AnalyzerError(
            f"invalid --baseline-window {text!r}: use START..END, e.g. "
            "2026-05-01T09:00:00Z..2026-05-01T10:00:00Z"
        )
    start, end = _instant(start_text), _instant(end_text)
    if end <= start:
        raise AnalyzerError(f"invalid --baseline-window {text!r}: END is not after START")
    return start, end


def _instant(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AnalyzerError(
            f"invalid time {text.strip()!r} in --baseline-window: use ISO 8601, "
            "e.g. 2026-05-01T09:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def run_comparison(request: CompareRequest) -> int:
    """Read, compare, write the report; the exit status (see the CLI's doc)."""
    given = [
        name
        for name, value in (
            ("--baseline", request.baseline),
            ("--baseline-offset", request.baseline_offset),
            ("--baseline-window", request.baseline_window),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise AnalyzerError(f"give one baseline, not {' and '.join(given)}")
    if request.baseline_offset is not None and request.input_path is not None:
        raise AnalyzerError(
            "--baseline-offset shifts the live window back; with --input give "
            "--baseline FILE or --baseline-window START..END"
        )
    baseline_source, source = _sources(request)
    warnings: list[str] = []

    # the baseline first: a wrong baseline fails before the (maybe long) candidate read
    # a live side reads the traces of one service (default api-gateway): a file on the other
    # side is held to the same, so that both sides hold the same kind of traces
    live = "jaeger" in (baseline_source.kind, source.kind)
    service = request.service or (common.DEFAULT_SERVICE if live else None)
    for side in (baseline_source, source):
        side.service = service if side.kind == "file" else side.service
    baseline = SideCollector(service, request.operation)
    baseline_warnings: list[str] = []
    limit = request.limit or (None if baseline_source.kind == "file" else common.DEFAULT_LIMIT)
    stopped: list[bool] = []
    with _reading(baseline_source, request, baseline_warnings) as traces:
        baseline.feed(_limited(traces, limit, stopped))
    if stopped:
        baseline_warnings.append(f"stopped at --limit ({limit:,} traces): more were there")

    candidate = SideCollector(service, request.operation)
    criteria = common.flag_criteria(
        request.threshold_us,
        request.errors_only,
        request.service,
        request.operation,
        request.slow_by,
    )
    limit = request.limit or (None if source.kind == "file" else common.DEFAULT_LIMIT)
    analyzer = Analyzer(
        criteria,
        service if source.kind == "file" else None,
        request.operation if source.kind == "file" else None,
        limit,
        request.output_format == "html",
    )
    with _reading(source, request, warnings) as traces:
        analyzer.feed(candidate.after(traces))
    outcome = analyzer.outcome()
    comparison = compare(baseline, candidate, request.criteria, baseline_source)
    comparison.warnings += [f"baseline: {w}" for w in baseline_warnings]
    if _overlap(baseline_source, source):
        comparison.warnings.append(
            "the baseline window overlaps the candidate's: traces in both are on both sides"
        )
    if not baseline.traces:
        comparison.warnings.append("the baseline has no traces: every operation is new")
    if not candidate.traces:
        comparison.warnings.append("the candidate has no traces: every operation is gone")
    problem = comparison.unjudged()
    if problem and baseline.traces and candidate.traces:
        comparison.warnings.insert(0, f"{problem}: nothing was judged")
    report = outcome.report(source, criteria, warnings)
    with_traces = request.threshold_us is not None or request.errors_only
    _emit(report, comparison, request, with_traces)
    if problem and request.fail_on:
        # a CI gate must not pass by comparing against nothing
        raise AnalyzerError(
            f"--fail-on {request.fail_on}: nothing was judged, {problem} (baseline "
            f"{side_text(baseline_source)}); check the baseline window, offset or file"
        )
    if request.fail_on == "regression":
        return 1 if comparison.count("regressed") else 0
    return common.exit_status(report, common.FailOn(request.fail_on) if request.fail_on else None)


def _sources(request: CompareRequest) -> tuple[Source, Source]:
    """Where the baseline and the candidate come from."""
    window_us = common.parse_lookback(request.lookback)
    live_service = request.service or common.DEFAULT_SERVICE
    now_us = time.time_ns() // 1000

    if request.baseline is not None:
        baseline_source = Source(
            "file", request.jaeger_url, request.baseline, request.service, request.operation
        )
    else:
        if request.baseline_window is not None:
            start_us, end_us = parse_window(request.baseline_window)
        else:
            assert request.baseline_offset is not None
            offset_us = _offset(request.baseline_offset)
            start_us, end_us = now_us - window_us - offset_us, now_us - offset_us
        baseline_source = Source(
            "jaeger",
            request.jaeger_url,
            service=live_service,
            operation=request.operation,
            start_us=start_us,
            end_us=end_us,
            api=request.api,
            jaeger_chosen=request.jaeger_chosen,
        )

    if request.input_path is not None:
        source = Source(
            "file", request.jaeger_url, request.input_path, request.service, request.operation
        )
    else:
        source = Source(
            "jaeger",
            request.jaeger_url,
            service=live_service,
            operation=request.operation,
            lookback=request.lookback.strip(),
            start_us=now_us - window_us,
            end_us=now_us,
            api=request.api,
            jaeger_chosen=request.jaeger_chosen,
        )
    return baseline_source, source


def _overlap(one: Source, other: Source) -> bool:
    if None in (one.start_us, one.end_us, other.start_us, other.end_us):
        return False  # a file
    return one.start_us <= other.end_us and other.start_us <= one.end_us  # type: ignore[operator]


def _offset(text: str) -> int:
    try:
        return common.parse_lookback(text)
    except AnalyzerError:
        raise AnalyzerError(f"invalid --baseline-offset {text!r}: use e.g. 1h, 1d, 1w") from None


def _limited(
    traces: Iterator[JaegerTrace], limit: int | None, stopped: list[bool]
) -> Iterator[JaegerTrace]:
    """At most ``limit`` traces; ``stopped`` gets an entry if more were there."""
    for index, trace in enumerate(traces):
        if limit is not None and index >= limit:
            stopped.append(True)
            return
        yield trace


class _reading:  # a context manager, named like open()
    """The traces of one side, as the analyzer reads them (a file, or a Jaeger window with a
    progress bar on a terminal)."""

    def __init__(self, source: Source, request: CompareRequest, warnings: list[str]) -> None:
        self.source = source
        self.request = request
        self.warnings = warnings
        self._bar = None
        self._client = None

    def __enter__(self) -> Iterator[JaegerTrace]:
        source = self.source
        if source.kind == "file":
            assert source.input_path is not None
            return iter_file_traces(source.input_path)
        from trace_analysis.sources.jaeger_api import JaegerClient, iter_window

        assert source.service is not None and source.start_us is not None
        assert source.end_us is not None
        self._client = JaegerClient(source.jaeger_url, self.request.timeout, self.request.api)
        self._bar = common.ProgressBar()
        progress = self._bar.__enter__()
        return iter_window(
            self._client,
            source.service,
            source.operation,
            source.start_us,
            source.end_us,
            self.request.page_size,
            self.warnings,
            progress,
        )

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        if self._client is not None:
            self.source.queries = self._client.queries
            self.source.api = self._client.used


def _emit(report: Report, comparison: Comparison, request: CompareRequest, traces: bool) -> None:
    """Write the report: the comparison, then (with a threshold or --errors-only) the
    candidate's flagged traces as without a baseline; JSON always has both."""
    from trace_analysis.reports.wording import source_text

    fmt = request.output_format
    if fmt != "json":  # JSON keeps the values, its encoder escapes them
        report, comparison = common.safe_report((report, comparison))
    candidate = source_text(report)
    if fmt == "table":
        from trace_analysis.reports.comparison_table import render_comparison_table
        from trace_analysis.reports.table import render_table

        console = common.report_console(to_string=request.output is not None)
        render_comparison_table(comparison, candidate, console)
        if traces:
            console.print()
            render_table(report, console, request.top)
        if request.output is None:
            return
        text = console.export_text()
    elif fmt == "json":
        from trace_analysis.reports.comparison import comparison_dict
        from trace_analysis.reports.json_report import encode_document, report_dict

        document = report_dict(report) | {"comparison": comparison_dict(comparison)}
        text = encode_document(document)
    elif fmt == "markdown":
        from trace_analysis.reports.comparison import render_comparison_markdown
        from trace_analysis.reports.markdown import render_markdown

        text = render_comparison_markdown(comparison, candidate)
        if traces:
            text += "\n" + render_markdown(report, request.top)
    else:
        from trace_analysis.reports.comparison_html import render_comparison_html

        text = render_comparison_html(report, comparison, request.top, traces)
    if request.output is None:
        sys.stdout.write(text)
        return
    try:
        request.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise AnalyzerError(f"cannot write {request.output}: {exc.strerror or exc}") from None
    print(
        f"{common.PROG}: wrote {fmt} comparison to {request.output} "
        f"({comparison.count('regressed')} regressed of {len(comparison.operations)} operations)",
        file=sys.stderr,
    )
