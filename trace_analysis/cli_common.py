"""What the command line's two paths (``cli``: analyze or explain; ``compare_run``: against a
baseline) share: the program's name and defaults, the choices of the options, the lookback
syntax, the progress bar and the exit rule."""

from __future__ import annotations

import io
import os
import re
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from trace_analysis.errors import AnalyzerError
from trace_analysis.formats.durations import UNIT_US
from trace_analysis.model.results import Criteria, Report

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from trace_analysis.sources.jaeger_api import Progress as ProgressCallback

T = TypeVar("T")
PROG = "analyze_traces.py"
DEFAULT_JAEGER_URL = "http://localhost:16686"
DEFAULT_SERVICE = "api-gateway"
DEFAULT_LIMIT = 20_000  # live mode: the newest traces of the window
# flagged traces listed: a terminal table of 10 (about 40 lines) leaves its headline and
# summary on a screen; a file (Markdown, HTML) can hold more
DEFAULT_TOP_TABLE = 10
DEFAULT_TOP = 50
_LOOKBACK = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def trace_link_base(jaeger_url: str, given: str | None) -> str | None:
    """Where reports link each trace (``<base>/trace/<id>``): ``given`` (``--link-base``,
    ``TRACE_LINK_BASE``); else, when ``jaeger_url`` is the Jaeger of the local stack that
    ``make up`` runs from this checkout, its trace browser, since that Jaeger has no UI; else
    None: Jaeger's own UI at ``jaeger_url``."""
    if given:
        return given.rstrip("/")
    from stackctl.ports import local_browser

    return local_browser(jaeger_url)


LOCAL_STACK = "the `make up` stack of this checkout, from run/ports.json"
NO_LOCAL_STACK = "the default, as no `make up` stack of this checkout runs"


def jaeger_to_read(given: str | None) -> tuple[str, str | None]:
    """The Jaeger query URL to read, and why that one when none was given: ``given``
    (``--jaeger-url``, ``JAEGER_URL``); else the Jaeger of the stack ``make up`` runs from this
    checkout, on the ports it recorded (they may be moved); else :data:`DEFAULT_JAEGER_URL`.
    Another stack on the default port is never read without a word: the report names it."""
    if given:
        return given, None
    from stackctl.ports import running_jaeger

    found = running_jaeger()
    if found is not None:
        return found, LOCAL_STACK
    return DEFAULT_JAEGER_URL, NO_LOCAL_STACK


def local_stack_hint(jaeger_url: str) -> str:
    """For an unreachable ``jaeger_url``: where the Jaeger of the stack ``make up`` started from
    this checkout is, when that is elsewhere (its ports were moved), as the option to give;
    else ``""``."""
    from stackctl.ports import local_browser, local_jaeger

    found = local_jaeger()
    if found is None or local_browser(jaeger_url) is not None:
        return ""
    return f"; `make up` in this checkout started its Jaeger at {found} (--jaeger-url {found})"


class Format(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"


class Api(StrEnum):
    auto = "auto"
    v3 = "v3"
    v1 = "v1"


class SlowBy(StrEnum):
    root = "root"  # the trace's root span: what its caller waited for
    span = "span"  # the longest span of --service / --operation


def flag_criteria(
    threshold_us: int | None,
    errors_only: bool,
    service: str | None,
    operation: str | None,
    slow_by: SlowBy,
) -> Criteria:
    """What flags a trace, from the options; ``--slow-by span`` needs a span to judge."""
    if slow_by is SlowBy.span:
        if service is None and operation is None:
            raise AnalyzerError("--slow-by span judges the span of --service/--operation: give one")
        return Criteria(threshold_us, errors_only, service, operation, selected=True)
    return Criteria(
        threshold_us, errors_only, selected=service is not None or operation is not None
    )


class FailOn(StrEnum):
    slow = "slow"
    error = "error"
    any = "any"
    regression = "regression"  # with a baseline: something regressed


class ProgressBar:
    """A progress bar on stderr while Jaeger is read, only if stderr is a terminal."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> ProgressCallback | None:
        if not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("reading Jaeger"),
            BarColumn(),
            TextColumn("{task.fields[traces]:,} traces"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("read", total=1, traces=0)
        return self._update

    def _update(self, done_us: int, total_us: int, traces: int) -> None:
        assert self._bar is not None and self._task is not None
        self._bar.update(self._task, completed=done_us, total=total_us, traces=traces)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


_THRESHOLD = re.compile(r"^\s*(-?\d*\.?\d+)\s*(us|µs|ms|s|m)?\s*$")


def parse_threshold(text: str) -> int:
    """A latency threshold to µs: ms without a unit (``200``, ``0.5``), or with one of
    ``us``/``µs``, ``ms``, ``s``, ``m`` (``200ms``, ``1.5s``, ``500us``)."""
    match = _THRESHOLD.match(text)
    if match is None:
        raise AnalyzerError(
            f"invalid threshold {text!r}: give ms (200) or a duration with its unit (200ms, "
            "1.5s, 500us)"
        )
    value = float(match.group(1)) * UNIT_US[match.group(2) or "ms"]
    if value < 0:
        raise AnalyzerError(f"threshold must be 0 ms or more, not {text.strip()}")
    return round(value)


def parse_lookback(text: str) -> int:
    """``15m``, ``1h``, ``2d``, ``1.5h``, ``90s``, ``1w`` to microseconds."""
    match = _LOOKBACK.match(text)
    if not match or float(match.group(1)) <= 0:
        raise AnalyzerError(f"invalid --lookback {text!r}: use e.g. 15m, 1h, 2d")
    return int(float(match.group(1)) * UNIT_US[match.group(2)])


def report_console(to_string: bool = False) -> Console:
    """The console a terminal report is drawn on: stdout (its width when a terminal, else
    :func:`plain_width`), or, ``to_string``, a recording one for ``--output``. Markup, emoji
    codes and highlighting are off: span text such as ``[bold]`` or ``:x:`` is printed as
    written (control characters are made visible before, by :func:`safe_report`)."""
    from rich.console import Console

    plain = dict(markup=False, emoji=False, highlight=False)
    if to_string:
        return Console(record=True, width=plain_width(), file=io.StringIO(), **plain)
    return Console(width=None if sys.stdout.isatty() else plain_width(), **plain)


def safe_report(report: T) -> T:
    """``report`` (a :class:`Report`, a comparison) with every string from span data, and any
    other, made visible for a terminal or a Markdown file (``servicekit/terminal.py``)."""
    from servicekit.terminal import visible_all

    return visible_all(report)


def plain_width() -> int:
    """Width when not writing to a terminal: $COLUMNS if set, else wide enough for a table."""
    try:
        return max(80, int(os.environ["COLUMNS"]))
    except (KeyError, ValueError):
        return 140


def exit_status(report: Report, fail_on: FailOn | None) -> int:
    """0, or 1 when ``fail_on`` matches a flagged trace. Under ``--fail-on``, a run that read
    no trace at all raises :class:`AnalyzerError` (exit 2): a gate must not pass on nothing,
    whatever the source (a file, a window, a mistyped service)."""
    if fail_on is None:
        return 0
    if not report.summary.traces:
        from trace_analysis.reports.wording import source_text

        raise AnalyzerError(
            f"--fail-on {fail_on}: nothing was judged, no trace to judge in "
            f"{source_text(report)}; check the file, --lookback, --service or --operation"
        )
    for trace in report.traces:
        if (
            fail_on is FailOn.any
            or (fail_on is FailOn.slow and trace.slow)
            or (fail_on is FailOn.error and trace.error)
        ):
            return 1
    return 0
