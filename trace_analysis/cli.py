"""``analyze_traces.py``: find slow and failing traces in Jaeger (or a saved export), and why.

Exit status: 0 when nothing is flagged (or ``--fail-on`` is not given), 1 when something is
flagged and ``--fail-on`` asks for it, 2 on a usage error, an unreachable Jaeger, or a
malformed response or file: always with one line on stderr naming the cause, never a
traceback (set ``ANALYZE_TRACES_DEBUG=1`` to get one for an unexpected failure).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trace_analysis.analyses.analyzer import Outcome, analyze_traces
from trace_analysis.analyses.compare import (
    DEFAULT_MIN_CHANGE_TEXT,
    DEFAULT_MIN_SAMPLES,
    CompareCriteria,
)
from trace_analysis.analyses.significance import DEFAULT_MIN_CHANGE_US
from trace_analysis.cli_common import (
    DEFAULT_JAEGER_URL,
    DEFAULT_LIMIT,
    DEFAULT_SERVICE,
    DEFAULT_TOP,
    DEFAULT_TOP_TABLE,
    PROG,
    Api,
    FailOn,
    Format,
    ProgressBar,
    SlowBy,
    exit_status,
    flag_criteria,
    jaeger_to_read,
    local_stack_hint,
    parse_lookback,
    parse_threshold,
    report_console,
    safe_report,
    trace_link_base,
)
from trace_analysis.errors import AnalyzerError, JaegerUnreachable
from trace_analysis.model.results import Criteria, Report, Source
from trace_analysis.sources.files import iter_file_traces

if TYPE_CHECKING:
    from trace_analysis.sources.jaeger_api import Progress as ProgressCallback
    from trace_analysis.sources.window_file import WindowFile

# requests, rich and the renderers are imported where used: a run from a file in CI should
# not pay for the HTTP stack, and start-up is a visible part of a short run

app = typer.Typer(add_completion=False, rich_markup_mode=None)


def _count_option(name: str, help: str) -> typer.models.OptionInfo:
    """A count (1 or more) whose default depends on the mode, so the help states it."""
    return typer.Option(name, min=1, help=help, show_default=False)


@app.command(
    help="Find traces slower than THRESHOLD_MS or failing, and say why: the critical path, "
    "the service and operation that took the time, the first failing span and its message, "
    "injected faults. Reads Jaeger's query API (v3, else v1), or a saved file (--input: "
    "Jaeger JSON, OTLP JSON, Zipkin v2 JSON; gzip too). With --trace ID: that trace's "
    "waterfall and why (no threshold needed).",
    epilog="Exit status: 0 nothing flagged (or no --fail-on), 1 flagged and --fail-on "
    "matched, 2 usage, connection or input error.",
)
def analyze(
    threshold: Annotated[
        str | None,
        typer.Argument(
            metavar="THRESHOLD_MS",
            help="slow = root span longer than this: ms (200), or with a unit (200ms, 1.5s, 500us)",
        ),
    ] = None,
    threshold_ms: Annotated[
        str | None, typer.Option("--threshold-ms", "-t", help="same as THRESHOLD_MS")
    ] = None,
    jaeger_url: Annotated[
        str | None,
        typer.Option(
            "--jaeger-url",
            envvar="JAEGER_URL",
            help="Jaeger query base URL [default: the Jaeger of the `make up` stack of this "
            f"checkout, on its recorded ports (run/ports.json), else {DEFAULT_JAEGER_URL}]",
            show_default=False,
        ),
    ] = None,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            "-s",
            help=f"traces with a span of this service [default: {DEFAULT_SERVICE}; "
            "with --input: every trace]",
            show_default=False,
        ),
    ] = None,
    operation: Annotated[
        str | None, typer.Option("--operation", "-o", help="... and of this operation")
    ] = None,
    lookback: Annotated[
        str, typer.Option("--lookback", "-l", help="window to read, e.g. 15m, 1h, 2d")
    ] = "1h",
    limit: Annotated[
        int | None,
        _count_option(
            "--limit",
            f"analyze at most this many traces (the newest) [default: {DEFAULT_LIMIT:,}; "
            "with --input: all]",
        ),
    ] = None,
    page_size: Annotated[
        int, typer.Option("--page-size", min=1, help="traces per Jaeger query")
    ] = 500,
    errors_only: Annotated[
        bool, typer.Option("--errors-only", help="flag failing traces only")
    ] = False,
    input_path: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            metavar="FILE",
            help="a saved trace file: Jaeger JSON, OTLP JSON (lines), Zipkin v2 JSON; gzip "
            "too ('-': stdin)",
        ),
    ] = None,
    output_format: Annotated[
        Format, typer.Option("--format", "-f", help="report format")
    ] = Format.table,
    output: Annotated[
        Path | None, typer.Option("--output", metavar="FILE", help="write the report here")
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            metavar="FILE",
            help="also write the window's traces as Jaeger sent them to FILE (JSON Lines; "
            ".gz: gzip), to read back with --input or compare with --baseline",
        ),
    ] = None,
    fail_on: Annotated[
        FailOn | None,
        typer.Option(
            "--fail-on",
            help="exit 1 if a flagged trace is slow / failing / either, or (with a baseline) "
            "if an operation regressed",
        ),
    ] = None,
    top: Annotated[
        int | None,
        _count_option(
            "--top",
            f"flagged traces shown in table/markdown/html [default: {DEFAULT_TOP_TABLE} in the "
            f"table, so that its summary stays on screen; {DEFAULT_TOP} otherwise]",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="seconds to wait for each Jaeger query")
    ] = 10.0,
    api: Annotated[
        Api,
        typer.Option("--api", help="Jaeger query API: auto (v3, else v1 where v3 is absent)"),
    ] = Api.auto,
    slow_by: Annotated[
        SlowBy,
        typer.Option(
            "--slow-by",
            help="judge slow on the root span, or on the longest span of --service/--operation",
        ),
    ] = SlowBy.root,
    link_base: Annotated[
        str | None,
        typer.Option(
            "--link-base",
            envvar="TRACE_LINK_BASE",
            help="where reports link each trace (<base>/trace/<id>) [default: the trace "
            "browser of the local stack (make up) reading --jaeger-url, else Jaeger's UI "
            "there]",
        ),
    ] = None,
    trace_ids: Annotated[
        list[str] | None,
        typer.Option(
            "--trace",
            metavar="TRACE_ID",
            help="explain this trace (repeatable): waterfall, culprit, first failure; from "
            "Jaeger by id, or from --input",
        ),
    ] = None,
    # --- comparison against a baseline (trace_analysis/compare_run.py) ---
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", metavar="FILE", help="compare with the traces of this file"),
    ] = None,
    baseline_offset: Annotated[
        str | None,
        typer.Option(
            "--baseline-offset",
            metavar="OFFSET",
            help="compare with the live window this much earlier, e.g. 1d",
        ),
    ] = None,
    baseline_window: Annotated[
        str | None,
        typer.Option(
            "--baseline-window",
            metavar="START..END",
            help="compare with this live window (ISO 8601; no zone: UTC)",
        ),
    ] = None,
    min_change: Annotated[
        str,
        typer.Option(
            "--min-change", metavar="PERCENT", help="with a baseline: smallest p50/p95 change"
        ),
    ] = DEFAULT_MIN_CHANGE_TEXT,
    min_change_ms: Annotated[
        float,
        typer.Option(
            "--min-change-ms", min=0, help="with a baseline: ... and at least this many ms"
        ),
    ] = DEFAULT_MIN_CHANGE_US / 1000,
    min_samples: Annotated[
        int,
        typer.Option(
            "--min-samples", min=2, help="with a baseline: fewer spans on a side: no verdict"
        ),
    ] = DEFAULT_MIN_SAMPLES,
) -> int:
    if top is None:
        top = DEFAULT_TOP_TABLE if output_format is Format.table else DEFAULT_TOP
    comparing = baseline is not None or baseline_offset is not None or baseline_window is not None
    if save is not None and (input_path is not None or trace_ids or comparing):
        raise AnalyzerError(
            "--save writes the window read from Jaeger: not with --input, --trace or a baseline"
        )
    # a run reads Jaeger unless every side is a file; a file's report only links to a Jaeger
    reads_jaeger = input_path is None or baseline_offset is not None or baseline_window is not None
    jaeger_url, jaeger_chosen = (
        jaeger_to_read(jaeger_url) if reads_jaeger else (jaeger_url or DEFAULT_JAEGER_URL, None)
    )
    if trace_ids:
        return _explain(
            trace_ids,
            _threshold_us(threshold, threshold_ms, errors_only=True),
            input_path,
            jaeger_url,
            api,
            timeout,
            output_format,
            output,
            link_base,
            jaeger_chosen,
        )
    if comparing:
        from trace_analysis.compare_run import CompareRequest, parse_min_change, run_comparison

        flagging = threshold is not None or threshold_ms is not None or errors_only
        return run_comparison(
            CompareRequest(
                baseline=baseline,
                baseline_offset=baseline_offset,
                baseline_window=baseline_window,
                criteria=CompareCriteria(
                    parse_min_change(min_change), round(min_change_ms * 1000), min_samples
                ),
                threshold_us=_threshold_us(threshold, threshold_ms, errors_only)
                if flagging
                else None,
                errors_only=errors_only,
                slow_by=slow_by,
                jaeger_url=jaeger_url,
                jaeger_chosen=jaeger_chosen,
                api=api.value,
                service=service,
                operation=operation,
                lookback=lookback,
                limit=limit,
                page_size=page_size,
                timeout=timeout,
                input_path=input_path,
                output_format=output_format.value,
                output=output,
                fail_on=fail_on.value if fail_on else None,
                top=top,
            )
        )
    if fail_on is FailOn.regression:
        raise AnalyzerError("--fail-on regression needs a baseline (--baseline, ...)")
    # --- end of the comparison ---
    threshold_us = _threshold_us(threshold, threshold_ms, errors_only)
    window_us = parse_lookback(lookback)  # checked even when --input makes it moot
    if not re.match(r"^https?://[^/\s]+", jaeger_url):
        raise AnalyzerError(f"invalid --jaeger-url {jaeger_url!r}: expected http(s)://host:port")
    criteria = flag_criteria(threshold_us, errors_only, service, operation, slow_by)
    waterfall = output_format is Format.html
    warnings: list[str] = []
    if input_path is not None:
        source = Source("file", jaeger_url, input_path, service, operation)
        traces = iter_file_traces(input_path)
        outcome = analyze_traces(traces, criteria, service, operation, limit, waterfall)
    else:
        end_us = time.time_ns() // 1000
        source = Source(
            "jaeger",
            jaeger_url,
            service=service or DEFAULT_SERVICE,
            operation=operation,
            lookback=lookback.strip(),
            start_us=end_us - window_us,
            end_us=end_us,
            api=api.value,
            jaeger_chosen=jaeger_chosen,
        )
        with ProgressBar() as progress, _window_file(save) as window:
            outcome = _read_jaeger(
                source,
                page_size,
                timeout,
                progress,
                warnings,
                criteria,
                limit or DEFAULT_LIMIT,
                waterfall,
                window.write if window is not None else None,
            )
        if window is not None:
            print(
                f"{PROG}: saved the window ({outcome.summary.traces:,} traces, "
                f"{window.pages} page(s) of Jaeger's answers) to {save}: read it back with "
                f"--input {save}, or compare with --baseline {save}"
                if window.pages
                else f"{PROG}: the window is empty: nothing saved to {save}",
                file=sys.stderr,
            )
    source.link_base = trace_link_base(jaeger_url, link_base)
    report = outcome.report(source, criteria, warnings)
    _emit(report, output_format, output, top)
    return exit_status(report, fail_on)


def _read_jaeger(
    source: Source,
    page_size: int,
    timeout: float,
    progress: ProgressCallback | None,
    warnings: list[str],
    criteria: Criteria,
    limit: int,
    waterfall: bool,
    save: Callable[[bytes], object] | None = None,
) -> Outcome:
    """Analyze the traces of ``source``'s window, read from Jaeger page by page (``save``
    gets each page as Jaeger sent it)."""
    from trace_analysis.sources.jaeger_api import JaegerClient, iter_window

    assert source.service is not None and source.start_us is not None
    assert source.end_us is not None
    client = JaegerClient(source.jaeger_url, timeout, source.api or "auto")
    try:
        traces = iter_window(
            client,
            source.service,
            source.operation,
            source.start_us,
            source.end_us,
            page_size,
            warnings,
            progress,
            save,
        )
        return analyze_traces(traces, criteria, None, None, limit, waterfall)
    finally:
        source.queries = client.queries
        source.api = client.used


def _window_file(path: Path | None) -> AbstractContextManager[WindowFile | None]:
    if path is None:
        return nullcontext()
    from trace_analysis.sources.window_file import WindowFile

    return WindowFile(path)


def _explain(
    trace_ids: list[str],
    threshold_us: int | None,
    input_path: str | None,
    jaeger_url: str,
    api: Api,
    timeout: float,
    output_format: Format,
    output: Path | None,
    link_base: str | None = None,
    jaeger_chosen: str | None = None,
) -> int:
    """``--trace``: the traces asked for, each with its waterfall and findings."""
    from trace_analysis.analyses.explain import check_ids, explain, from_jaeger, from_traces

    wanted = check_ids(trace_ids, from_file=input_path is not None)
    criteria = Criteria(threshold_us)
    if input_path is not None:
        source = Source("file", jaeger_url, input_path, trace_ids=wanted)
        traces = from_traces(iter_file_traces(input_path), wanted, input_path)
        outcome = explain(traces, criteria, wanted)
    else:
        from trace_analysis.sources.jaeger_api import JaegerClient

        source = Source("jaeger", jaeger_url, trace_ids=wanted, jaeger_chosen=jaeger_chosen)
        client = JaegerClient(jaeger_url, timeout, api.value)
        try:
            outcome = explain(from_jaeger(client, wanted), criteria, wanted)
        finally:
            source.queries = client.queries
            source.api = client.used
    source.link_base = trace_link_base(jaeger_url, link_base)
    report = Report(
        source=source,
        criteria=criteria,
        summary=outcome.summary,
        traces=outcome.traces,
        warnings=outcome.warnings,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    _emit(report, output_format, output, len(report.traces), explained=True)
    return 0


def _threshold_us(positional: str | None, option: str | None, errors_only: bool) -> int | None:
    """The threshold in µs (ms without a unit: ``200``, ``200ms``, ``1s``, ``500us``); None
    with ``errors_only`` (or ``--trace``) and none given."""
    given = positional if positional is not None else option
    if given is None:
        if errors_only:
            return None
        raise AnalyzerError(f"give a latency threshold in ms (e.g. `{PROG} 200`), or --errors-only")
    value = parse_threshold(given)
    if positional is not None and option is not None and parse_threshold(option) != value:
        raise AnalyzerError(
            f"two thresholds given ({positional} and --threshold-ms {option}): give one"
        )
    return value


def _emit(
    report: Report, output_format: Format, output: Path | None, top: int, explained: bool = False
) -> None:
    if output_format is not Format.json:  # JSON keeps the values, its encoder escapes them
        report = safe_report(report)
    if output_format is Format.table:
        from rich.console import Console

        if explained:
            from trace_analysis.reports.trace_view import render_trace_table as render

            def draw(console: Console) -> None:
                render(report, console)
        else:
            from trace_analysis.reports.table import render_table

            def draw(console: Console) -> None:
                render_table(report, console, top)

        console = report_console(to_string=output is not None)
        draw(console)
        if output is None:
            return
        text = console.export_text()
    elif output_format is Format.json:
        from trace_analysis.reports.json_report import render_json

        text = render_json(report)
    elif output_format is Format.markdown and explained:
        from trace_analysis.reports.trace_view import render_trace_markdown

        text = render_trace_markdown(report)
    elif output_format is Format.markdown:
        from trace_analysis.reports.markdown import render_markdown

        text = render_markdown(report, top)
    else:
        from trace_analysis.reports.html_report import render_html

        text = render_html(report, top, explained)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise AnalyzerError(f"cannot write {output}: {exc.strerror or exc}") from None
    what = (
        f"{len(report.traces)} trace(s) explained"
        if explained
        else f"{len(report.traces)} flagged of {report.summary.traces:,} traces"
    )
    print(f"{PROG}: wrote {output_format.value} report to {output} ({what})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status instead of raising SystemExit."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except JaegerUnreachable as exc:
        return _fail(f"{exc}{local_stack_hint(exc.url)}")
    except AnalyzerError as exc:
        return _fail(str(exc))
    except (typer.Abort, KeyboardInterrupt):
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:  # a usage error: bad option, value or argument
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return _fail(" ".join(message.split()))
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except Exception as exc:  # never a traceback for the user; opt in to see one
        if os.environ.get("ANALYZE_TRACES_DEBUG"):
            raise
        return _fail(f"unexpected {type(exc).__name__}: {exc} (ANALYZE_TRACES_DEBUG=1 shows where)")
    return result if isinstance(result, int) else 0


def _fail(message: str) -> int:
    """Exit status 2 with ``message`` on stderr: it may quote input (a span's text, a file's
    content, an argument), so its control characters are made visible."""
    from servicekit.terminal import visible

    print(f"{PROG}: error: {visible(message)}", file=sys.stderr)
    return 2
