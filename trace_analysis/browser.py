"""The trace browser: a small read-only web view of the traces in Jaeger, drawn by the analyzer.

Local mode's Jaeger is built from source without its UI (a placeholder page answers at
``/trace/<id>``), so ``make up`` starts this beside it (``python -m trace_analysis.browser``):

- ``GET /``: the recent traces of a service and, above them, the flagged ones (slower than
  ``TRACE_BROWSER_SLOW_MS`` or failing), each with its root operation, latency, status, culprit
  (the most self time on the critical path) and first failure. Searched by query parameters:
  ``service``, ``operation``, ``min_ms`` (minimum latency, ms), ``errors=1`` (failing only),
  ``lookback`` (15m, 1h, 6h, 1d, 2d) and ``limit`` (traces shown, newest first, 1-1000). A
  search by ``min_ms`` or ``errors`` looks through the whole window (up to the analyzer's
  20,000 newest traces), not only the newest ``limit``.
- ``GET /search``: Jaeger UI's search by its URL (``service``, ``operation``, ``tags``,
  ``minDuration``, ``maxDuration``, ``lookback``, ``limit``; see
  :mod:`trace_analysis.analyses.search`), the found traces' durations plotted.
- ``GET /trace/{trace_id}``: one trace, opening on its header, then the waterfall whose every
  span opens on what it recorded and its log lines (:mod:`trace_analysis.reports.trace_page`);
  ``/trace/{id}/json`` the trace as Jaeger answered it; ``/trace/{a}...{b}`` two traces
  compared. The same paths as Jaeger's UI, so reports link here by changing the base URL only.
- ``GET /dependencies``: the service map of a window, calls and error rates per edge.

It reads Jaeger's query API only (``JAEGER_URL``, through the analyzer's :class:`JaegerClient`);
it answers GET and nothing else, binds to loopback unless ``TRACE_BROWSER_HOST`` says
otherwise, answers only a loopback ``Host`` or one in ``LOOPBACK_ALLOWED_HOSTS``
(:mod:`servicekit.loopback_host`; its links are relative, never built from ``Host``), escapes
every value it shows (span names and messages come from traced requests), and sends a
Content-Security-Policy that allows no script. A Jaeger that cannot be read is a 502 page with
the analyzer's one-line reason, one that does not answer in time a 504 page, too many pages
waiting for Jaeger a 503 (:mod:`trace_analysis.browser_limits`); an unknown trace id a 404 page.

Settings (environment): ``JAEGER_URL`` (``http://127.0.0.1:16686``), ``TRACE_BROWSER_HOST``
(``127.0.0.1``), ``TRACE_BROWSER_PORT`` (16680), ``TRACE_BROWSER_SLOW_MS`` (200),
``TRACE_BROWSER_JAEGER_UI`` (a Jaeger UI to link each trace to as well; empty: none),
``TRACE_BROWSER_JAEGER_TIMEOUT_SECONDS`` (10), ``TRACE_BROWSER_PAGE_DEADLINE_SECONDS`` (20),
``TRACE_BROWSER_MAX_JAEGER_CALLS`` (8), ``LOOPBACK_ALLOWED_HOSTS`` (empty),
``REQUEST_HEAD_TIMEOUT_SECONDS`` (10), ``MAX_CONNECTIONS`` (1000),
``TRACE_BROWSER_LOG_DIR`` (the log files each span's lines are read from; empty: none),
``TRACE_BROWSER_LOG_BYTES`` (32 MiB read from the end of each, per page). docs/trace-browser.md
has the pages and rules.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from html import escape
from itertools import islice
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from servicekit.loopback_host import ALLOWED_HOSTS_VARIABLE, HostRule, LoopbackHostMiddleware
from servicekit.server import bounded_protocol
from servicekit.settings import ServerBounds
from trace_analysis.analyses.analyzer import Analyzer
from trace_analysis.analyses.dependencies import ServiceMap
from trace_analysis.analyses.explain import check_ids, explain, from_jaeger
from trace_analysis.analyses.search import TraceFilter, found_in, parse_duration, parse_tags
from trace_analysis.browser_limits import install as install_limits
from trace_analysis.browser_limits import jaeger_slot, jaeger_status, page_deadline
from trace_analysis.cli_common import DEFAULT_LIMIT, DEFAULT_SERVICE, parse_lookback
from trace_analysis.errors import AnalyzerError
from trace_analysis.formats.details import PageReader, document, of_trace
from trace_analysis.formats.jaeger import INSTANCE_ID, JaegerTrace
from trace_analysis.model.results import Criteria, InstanceStats, TraceResult
from trace_analysis.reports import wording
from trace_analysis.reports.html_report import instances_html, page_head, tags, why
from trace_analysis.reports.svg import duration_plot, service_map
from trace_analysis.reports.trace_page import render_trace_page
from trace_analysis.reports.trace_pair import render_trace_pair
from trace_analysis.sources.jaeger_api import JaegerClient, iter_window
from trace_analysis.sources.span_logs import trace_logs

LOOKBACKS = ("15m", "1h", "6h", "1d", "2d")
JAEGER_LOOKBACKS = ("1h", "2h", "3h", "6h", "12h", "24h", "2d", "7d")  # /search's, as Jaeger UI's
MAP_SERVICES = 50  # services whose traces the service map reads, one search each
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
CSS = """
nav.browser { margin: 0 0 16px; padding-bottom: 8px; border-bottom: 1px solid var(--line); }
form.search { display: flex; flex-wrap: wrap; gap: 10px 16px; align-items: end; margin: 12px 0;
  padding: 12px; border: 1px solid var(--line); border-radius: 8px; background: var(--bg-soft); }
form.search label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); }
form.search label.check { flex-direction: row; gap: 4px; align-items: center; }
form.search input, form.search select { font: inherit; padding: 3px 6px; }
"""


class BrowserSettings(ServerBounds):
    """Read from the environment; see the module docstring (and, for its server's bounds,
    :class:`servicekit.settings.ServerBounds`)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    jaeger_url: str = Field("http://127.0.0.1:16686", description="Jaeger's query API")
    host: str = Field(
        "127.0.0.1",
        validation_alias=AliasChoices("trace_browser_host"),
        description="bind address; loopback keeps the traces on this machine",
    )
    port: int = Field(16680, validation_alias=AliasChoices("trace_browser_port"))
    slow_ms: float = Field(
        200,
        ge=0,
        validation_alias=AliasChoices("trace_browser_slow_ms"),
        description="traces slower than this, or failing, are flagged",
    )
    jaeger_ui: str = Field(
        "",
        validation_alias=AliasChoices("trace_browser_jaeger_ui"),
        description="a Jaeger UI to link each trace to as well; empty: none",
    )
    jaeger_timeout_s: float = Field(
        10.0,
        gt=0,
        validation_alias=AliasChoices("trace_browser_jaeger_timeout_seconds"),
        description="seconds one Jaeger query may take in all, connect to last byte",
    )
    page_deadline_s: float = Field(
        20.0,
        gt=0,
        validation_alias=AliasChoices("trace_browser_page_deadline_seconds"),
        description="seconds all the Jaeger queries of one page may take together",
    )
    max_jaeger_calls: int = Field(
        8,
        ge=1,
        le=32,  # below the 40 worker threads, which /healthz does not need but pages do
        validation_alias=AliasChoices("trace_browser_max_jaeger_calls"),
        description="pages waiting for Jaeger at once; one more gets 503 and Retry-After",
    )
    allowed_hosts: str = Field(
        "",
        validation_alias=AliasChoices(ALLOWED_HOSTS_VARIABLE.lower()),
        description="comma-separated names (or addresses) answered besides loopback ones",
    )
    log_dir: str = Field(
        "",
        validation_alias=AliasChoices("trace_browser_log_dir"),
        description="the services' log files (<process>.log), read for each span's log lines; "
        "empty: none",
    )
    log_bytes: int = Field(
        32 * 1024 * 1024,
        gt=0,
        validation_alias=AliasChoices("trace_browser_log_bytes"),
        description="at most this many bytes read from the end of each log file per page",
    )

    @property
    def criteria(self) -> Criteria:
        return Criteria(round(self.slow_ms * 1000))


@dataclass
class Search:
    """What the list page shows: the form's values."""

    service: str
    operation: str
    min_ms: float
    errors: bool
    lookback: str
    limit: int


def jaeger_client(
    request: Request, _: Annotated[None, Depends(jaeger_slot)]
) -> Iterator[JaegerClient]:
    """A client of the app's Jaeger, per request (its session is not shared across threads),
    once the request holds a Jaeger slot; its calls end by the page's deadline."""
    settings: BrowserSettings = request.app.state.settings
    client = JaegerClient(
        settings.jaeger_url,
        settings.jaeger_timeout_s,
        call_deadline_s=settings.jaeger_timeout_s,
        ends_at=page_deadline(settings.page_deadline_s),
    )
    try:
        yield client
    finally:
        client.session.close()


Jaeger = Annotated[JaegerClient, Depends(jaeger_client)]


def create_app(settings: BrowserSettings | None = None) -> FastAPI:
    """The browser's app; ``settings`` default to the environment's."""
    settings = settings or BrowserSettings()
    app = FastAPI(title="trace browser", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    install_limits(app, settings.max_jaeger_calls, _error_page)

    @app.middleware("http")
    async def read_only(request: Request, call_next):  # type: ignore[no-untyped-def]
        if request.method != "GET":
            response: Response = PlainTextResponse(
                "read-only: GET only\n", 405, headers={"allow": "GET"}
            )
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    # outermost: a foreign Host is refused before anything else runs
    rule = HostRule.allowing(settings.allowed_hosts.split(","))
    app.add_middleware(LoopbackHostMiddleware, rule=rule)

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        """Liveness, for stackctl: answers without asking Jaeger, on the event loop (no
        worker thread), so pages waiting for Jaeger never delay it."""
        return "ok\n"

    @app.get("/", response_class=HTMLResponse)
    def traces(
        jaeger: Jaeger,
        service: Annotated[str, Query(max_length=200)] = "",
        operation: Annotated[str, Query(max_length=500)] = "",
        min_ms: Annotated[float, Query(ge=0, le=86_400_000)] = 0,
        errors: bool = False,
        lookback: Annotated[str, Query(pattern="^(" + "|".join(LOOKBACKS) + ")$")] = "1h",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> HTMLResponse:
        search = Search(service.strip(), operation.strip(), min_ms, errors, lookback, limit)
        try:
            services = jaeger.services()
            search.service = search.service or _default_service(services)
            found, warnings = _search(jaeger, search, settings) if search.service else ([], [])
        except AnalyzerError as exc:
            return _error_page(str(exc), jaeger_status(exc))
        operations = _operations(jaeger, search.service)
        page = _list_page(search, services, operations, found, warnings, settings)
        return HTMLResponse(page)

    @app.get("/search", response_class=HTMLResponse)
    def search(
        jaeger: Jaeger,
        service: Annotated[str, Query(max_length=200)] = "",
        operation: Annotated[str, Query(max_length=500)] = "",
        tags: Annotated[str, Query(max_length=2000)] = "",
        min_duration: Annotated[str, Query(alias="minDuration", max_length=20)] = "",
        max_duration: Annotated[str, Query(alias="maxDuration", max_length=20)] = "",
        lookback: Annotated[str, Query(max_length=20)] = "1h",
        start: Annotated[int | None, Query(ge=0)] = None,
        end: Annotated[int | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=1500)] = 20,
        trace_ids: Annotated[list[str] | None, Query(alias="traceID", max_length=50)] = None,
    ) -> HTMLResponse:
        """Jaeger UI's search, by its URL (see trace_analysis/analyses/search.py); with
        ``traceID`` (repeated), those traces."""
        if trace_ids:
            return _by_ids(jaeger, trace_ids)
        form = JaegerSearch(
            service.strip(), operation.strip(), tags, min_duration, max_duration, lookback,
            start, end, limit,
        )  # fmt: skip
        try:
            wanted, start_us, end_us = form.parsed()
        except AnalyzerError as exc:
            return _error_page(str(exc), 400)
        try:
            services = jaeger.services()
            form.service = wanted.service = form.service or _default_service(services)
            found, warnings = _jaeger_search(jaeger, form, wanted, start_us, end_us, settings)
        except AnalyzerError as exc:
            return _error_page(str(exc), jaeger_status(exc))
        operations = _operations(jaeger, form.service)
        page = _search_page(form, services, operations, found, warnings, settings)
        return HTMLResponse(page)

    @app.get("/compare")
    def compare(trace: Annotated[list[str] | None, Query(max_length=100)] = None) -> Response:
        """Two traces ticked in a list: to their comparison, ``/trace/<a>...<b>`` (a path
        relative to this browser, built from the checked ids only)."""
        try:
            ids = check_ids(trace or [], from_file=False)
        except AnalyzerError as exc:
            return _error_page(str(exc), 400)
        if len(ids) != 2:
            return _error_page("tick two traces to compare them", 400)
        return RedirectResponse(f"/trace/{ids[0]}...{ids[1]}", status_code=303)

    @app.get("/dependencies", response_class=HTMLResponse)
    def dependencies(
        jaeger: Jaeger,
        lookback: Annotated[str, Query(max_length=20)] = "1h",
        limit: Annotated[int, Query(ge=1, le=DEFAULT_LIMIT)] = 1000,
    ) -> HTMLResponse:
        """The service map of the window: each service's newest ``limit`` traces, counted."""
        try:
            end_us = time.time_ns() // 1000
            start_us = end_us - parse_lookback(lookback)
        except AnalyzerError as exc:
            return _error_page(str(exc), 400)
        graph, warnings = ServiceMap(), []
        try:
            services = jaeger.services()
            if len(services) > MAP_SERVICES:
                warnings.append(
                    f"Jaeger knows {len(services):,} services: the first {MAP_SERVICES} by name "
                    "were read (their calls to others are counted)"
                )
            for service in services[:MAP_SERVICES]:
                window = iter_window(
                    jaeger, service, None, start_us, end_us, min(limit, 500), warnings
                )
                graph.add_all(islice(window, limit))
        except AnalyzerError as exc:
            return _error_page(str(exc), jaeger_status(exc))
        return HTMLResponse(_dependencies_page(graph, lookback, limit, warnings, settings))

    @app.get("/trace/{trace_id}", response_class=HTMLResponse)
    def trace(
        trace_id: str,
        jaeger: Jaeger,
        ui_find: Annotated[str, Query(alias="uiFind", max_length=500)] = "",
    ) -> HTMLResponse:
        if "..." in trace_id:  # Jaeger UI's comparison of two traces: /trace/<a>...<b>
            return _pair(jaeger, *trace_id.split("...", 1))
        try:
            fetched = _fetch(jaeger, trace_id)
            outcome = explain([fetched], settings.criteria, [fetched.trace_id])
        except AnalyzerError as exc:
            return _error_page(str(exc), _status(exc))
        logs = None
        if settings.log_dir:
            logs = trace_logs(Path(settings.log_dir), fetched.trace_id, settings.log_bytes)
        shown = outcome.traces[0]
        drawn = {row.span_id for row in shown.waterfall or []}
        details = of_trace(fetched, drawn)
        page = render_trace_page(shown, details, logs, _nav(), settings.jaeger_ui, ui_find)
        return HTMLResponse(page)

    def _by_ids(jaeger: JaegerClient, trace_ids: list[str]) -> HTMLResponse:
        try:
            wanted = check_ids([t for t in trace_ids if t.strip()], from_file=False)
            outcome = explain(from_jaeger(jaeger, wanted), settings.criteria, wanted)
        except AnalyzerError as exc:
            return _error_page(str(exc), _status(exc))
        form = JaegerSearch("", "", "", "", "", "1h", None, None, len(wanted))
        services = _services_hint(jaeger)
        page = _search_page(form, services, [], outcome.traces, [], settings)
        return HTMLResponse(page)

    def _pair(jaeger: JaegerClient, first: str, second: str) -> HTMLResponse:
        try:
            a, b = _fetch(jaeger, first), _fetch(jaeger, second)
            outcome = explain([a, b], settings.criteria, [a.trace_id, b.trace_id])
        except AnalyzerError as exc:
            return _error_page(str(exc), _status(exc))
        if len(outcome.traces) < 2:  # the same trace twice
            outcome.traces.append(outcome.traces[0])
        return HTMLResponse(render_trace_pair(*outcome.traces[:2], nav=_nav()))

    @app.get("/trace/{trace_id}/json")
    def trace_json(trace_id: str, jaeger: Jaeger) -> Response:
        """The trace as Jaeger answered it (OTLP JSON from /api/v3, or Jaeger JSON from v1),
        as a file to save; the analyzer reads either (``analyze_traces.py -i FILE``)."""
        try:
            fetched = _fetch(jaeger, trace_id)
        except AnalyzerError as exc:
            return PlainTextResponse(f"{exc}\n", _status(exc))
        body, kind = document(fetched) or (b"", "none")
        name = f"trace-{fetched.trace_id}.{kind}.json"
        headers = {"content-disposition": f'attachment; filename="{name}"'}
        return Response(body, media_type="application/json", headers=headers)

    return app


@dataclass
class JaegerSearch:
    """The ``/search`` form: Jaeger UI's URL parameters, as given."""

    service: str
    operation: str
    tags: str
    min_duration: str
    max_duration: str
    lookback: str
    start: int | None
    end: int | None
    limit: int

    def parsed(self) -> tuple[TraceFilter, int, int]:
        """The filter and the window (epoch µs); :class:`AnalyzerError` for a bad value."""
        wanted = TraceFilter(
            self.service,
            self.operation,
            parse_tags(self.tags),
            parse_duration(self.min_duration, "minDuration"),
            parse_duration(self.max_duration, "maxDuration"),
        )
        now_us = time.time_ns() // 1000
        if self.lookback == "custom":
            end_us = self.end if self.end is not None else now_us
            start_us = self.start if self.start is not None else end_us - 3_600_000_000
        else:
            end_us, start_us = now_us, now_us - parse_lookback(self.lookback)
        if start_us > end_us:
            raise AnalyzerError("start is after end")
        return wanted, start_us, end_us


def _default_service(services: list[str]) -> str:
    """The service a search opens on: the gateway's, else the first Jaeger knows."""
    if DEFAULT_SERVICE in services:
        return DEFAULT_SERVICE
    return services[0] if services else ""


def _jaeger_search(
    jaeger: JaegerClient,
    form: JaegerSearch,
    wanted: TraceFilter,
    start_us: int,
    end_us: int,
    settings: BrowserSettings,
) -> tuple[list[TraceResult], list[str]]:
    """The newest ``form.limit`` traces of the window that match ``wanted`` (read as they come,
    their details parsed only for a search by tags), each analyzed."""
    if not form.service:
        return [], []
    jaeger.keep_documents = bool(wanted.tags)
    found, warnings = _newest(
        jaeger, form.service, form.operation, (start_us, end_us), form.limit, settings,
        filtered=wanted.active, matching=lambda traces: found_in(traces, wanted, PageReader()),
    )  # fmt: skip
    return found[: form.limit], warnings


def _newest(
    jaeger: JaegerClient,
    service: str,
    operation: str,
    window_us: tuple[int, int],
    limit: int,
    settings: BrowserSettings,
    *,
    filtered: bool,
    matching: Callable[[Iterable[JaegerTrace]], Iterable[JaegerTrace]] = iter,
) -> tuple[list[TraceResult], list[str]]:
    """The traces of a service's window (``window_us``: start, end, epoch µs) that ``matching``
    lets through, each analyzed (culprit, failure), newest first. Unfiltered, the newest
    ``limit``; ``filtered``, the matches are looked for in the whole window, up to
    ``DEFAULT_LIMIT`` traces read: a filter applied to the newest ``limit`` only would answer
    "none" while older traces of the window match."""
    warnings: list[str] = []
    read = DEFAULT_LIMIT if filtered else limit
    window = _Counted(
        iter_window(jaeger, service, operation or None, *window_us, min(read, 500), warnings),
        read,
    )
    analyzer = Analyzer(settings.criteria, limit=read, keep_all=True)
    analyzer.feed(matching(window))
    if filtered and window.more:
        warnings.append(f"searched the newest {read:,} traces of the window only")
    return sorted(analyzer.outcome().traces, key=lambda trace: -trace.start_us), warnings


class _Counted:
    """At most ``cap`` traces of an iterable; ``more`` once it is known to hold another."""

    def __init__(self, traces: Iterator[JaegerTrace], cap: int) -> None:
        self.traces, self.cap, self.more = traces, cap, False

    def __iter__(self) -> Iterator[JaegerTrace]:
        for read, trace in enumerate(self.traces):
            if read >= self.cap:
                self.more = True
                return
            yield trace


def _fetch(jaeger: JaegerClient, trace_id: str) -> JaegerTrace:
    """The trace with this id from Jaeger, as fetched (its document kept for the details)."""
    wanted = check_ids([trace_id], from_file=False)
    return next(from_jaeger(jaeger, wanted))


def _status(exc: AnalyzerError) -> int:
    """The HTTP status of a page that could not be drawn: an unknown trace 404, a bad id 400,
    else Jaeger's (:func:`trace_analysis.browser_limits.jaeger_status`: 504 out of time, 502)."""
    message = str(exc)
    if "not found" in message:
        return 404
    return 400 if "not a trace id" in message else jaeger_status(exc)


def _search(
    jaeger: JaegerClient, search: Search, settings: BrowserSettings
) -> tuple[list[TraceResult], list[str]]:
    """The list page's traces: the newest ``limit`` of the window at least ``min_ms`` long (and
    failing, with ``errors``), each analyzed."""
    end_us = time.time_ns() // 1000
    window_us = (end_us - parse_lookback(search.lookback), end_us)
    filtered = search.min_ms > 0 or search.errors
    traces, warnings = _newest(
        jaeger, search.service, search.operation, window_us, search.limit, settings,
        filtered=filtered,
    )  # fmt: skip
    found = [
        trace
        for trace in traces
        if trace.latency_us >= search.min_ms * 1000 and (trace.error or not search.errors)
    ]
    return found[: search.limit], warnings


def _services_hint(jaeger: JaegerClient) -> list[str]:
    """The services, offered in a form; a hint only, so never an error."""
    try:
        return jaeger.services()
    except AnalyzerError:
        return []


def _operations(jaeger: JaegerClient, service: str) -> list[str]:
    """The service's operations, offered in the search form; a hint only, so never an error."""
    try:
        return jaeger.operations(service) if service else []
    except AnalyzerError:
        return []


def _nav() -> str:
    return (
        '<nav class="browser"><a href="/">&larr; all traces</a> &middot; '
        '<a href="/search">search</a> &middot; <a href="/dependencies">service map</a></nav>'
    )


def _error_page(message: str, status: int) -> HTMLResponse:
    parts = [*page_head("Trace browser"), _nav(), f"<p><b>error:</b> {escape(message)}</p>"]
    return HTMLResponse("\n".join([*parts, "</body></html>\n"]), status_code=status)


def _list_page(
    search: Search,
    services: list[str],
    operations: list[str],
    found: list[TraceResult],
    warnings: list[str],
    settings: BrowserSettings,
) -> str:
    flagged = [trace for trace in found if trace.slow or trace.error]
    where = f"{search.service or 'no service'} in Jaeger at {settings.jaeger_url}"
    parts = [
        *page_head("Trace browser"),
        f"<style>{CSS}</style>",
        _nav(),
        f'<div class="muted">{escape(where)}, last {escape(search.lookback)}: '
        f"{len(found)} trace(s), {len(flagged)} flagged (slower than "
        f"{settings.slow_ms:g} ms or failing).</div>",
        _form(search, services, operations),
    ]
    parts += [f'<p class="muted">warning: {escape(w)}</p>' for w in warnings]
    if not services:
        parts.append("<p><b>Jaeger has no traces yet.</b> Place an order, then reload.</p>")
    parts.append(duration_plot(found))
    parts.append(f"<h2>Flagged ({len(flagged)})</h2>")
    parts.append(_table(flagged, settings) if flagged else "<p>None in this window.</p>")
    parts.append(f"<h2>Recent ({len(found)})</h2>")
    parts.append(_table(found, settings) if found else "<p>No trace matches.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _search_page(
    form: JaegerSearch,
    services: list[str],
    operations: list[str],
    found: list[TraceResult],
    warnings: list[str],
    settings: BrowserSettings,
) -> str:
    where = f"{form.service or 'no service'} in Jaeger at {settings.jaeger_url}"
    parts = [
        *page_head("Search traces"),
        f"<style>{CSS}</style>",
        _nav(),
        _jaeger_form(form, services, operations),
        f'<div class="muted">{escape(where)}: {len(found)} trace(s) found, newest first.</div>',
    ]
    parts += [f'<p class="muted">warning: {escape(w)}</p>' for w in warnings]
    parts.append(duration_plot(found))
    parts.append(_table(found, settings) if found else "<p>No trace matches.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _options(values: Iterable[str], selected: str | None = None) -> str:
    """``<option>`` elements for a ``<select>`` (the ``selected`` one marked) or, with no
    ``selected``, suggestions for a ``<datalist>`` (value only); all escaped."""
    if selected is None:
        return "".join(f'<option value="{escape(value)}"></option>' for value in values)
    return "".join(
        f'<option value="{escape(value)}"{" selected" if value == selected else ""}>'
        f"{escape(value)}</option>"
        for value in values
    )


def _jaeger_form(form: JaegerSearch, services: list[str], operations: list[str]) -> str:
    options = _options(services or [form.service], form.service)
    known = _options(operations)
    choices = JAEGER_LOOKBACKS if form.lookback in JAEGER_LOOKBACKS else (
        form.lookback, *JAEGER_LOOKBACKS
    )  # fmt: skip
    lookbacks = _options(choices, form.lookback)
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{value}">'
        for name, value in (("start", form.start), ("end", form.end))
        if value is not None
    )
    return (
        '<form class="search" method="get" action="/search">'
        f'<label>service<select name="service">{options}</select></label>'
        '<label>operation<input name="operation" placeholder="all" list="operations" '
        f'value="{escape(form.operation)}"></label>'
        f'<datalist id="operations">{known}</datalist>'
        '<label>tags<input name="tags" size="34" placeholder="http.response.status_code=500 '
        f'error=true" value="{escape(form.tags)}"></label>'
        f'<label>lookback<select name="lookback">{lookbacks}</select></label>'
        '<label>min duration<input name="minDuration" size="8" placeholder="e.g. 100ms" '
        f'value="{escape(form.min_duration)}"></label>'
        '<label>max duration<input name="maxDuration" size="8" placeholder="e.g. 1.2s" '
        f'value="{escape(form.max_duration)}"></label>'
        '<label>limit<input name="limit" type="number" min="1" max="1500" '
        f'value="{form.limit}"></label>{hidden}'
        '<button type="submit">Find traces</button></form>'
    )


def _dependencies_page(
    graph: ServiceMap, lookback: str, limit: int, warnings: list[str], settings: BrowserSettings
) -> str:
    where = (
        f"Jaeger at {settings.jaeger_url}, last {lookback}: {graph.traces:,} trace(s) "
        f"(each service's newest {limit:,}), {len(graph.services)} service(s), "
        f"{len(graph.edges)} edge(s)."
    )
    parts = [
        *page_head("Service map"),
        _nav(),
        f'<div class="muted">{escape(where)}</div>',
    ]
    parts += [f'<p class="muted">warning: {escape(w)}</p>' for w in warnings]
    if not graph.edges:
        parts.append("<p><b>No calls between services in this window.</b></p>")
    parts.append(service_map(graph))
    rows = "".join(
        f"<tr><td>{escape(edge.caller)}</td><td>{escape(edge.callee)}</td>"
        f'<td class="num">{edge.calls:,}</td><td class="num">{edge.errors:,}</td>'
        f'<td class="num">{edge.error_rate:.1%}</td></tr>'
        for edge in sorted(graph.edges.values(), key=lambda e: (e.caller, e.callee))
    )
    if rows:
        parts.append(
            '<table><tr><th>caller</th><th>callee</th><th class="num">calls</th>'
            f'<th class="num">failed</th><th class="num">error rate</th></tr>{rows}</table>'
        )
    instances, findings = graph.instances.finish()
    if instances:  # a service ran as several processes: which one is the bad replica
        parts.append(f"<h2>{escape(wording.INSTANCES_TITLE)}</h2>")
        parts.append(instances_html(instances, findings, partial(_instance_search, lookback)))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _instance_search(lookback: str, stats: InstanceStats) -> str:
    """``/search`` for the traces of one instance (its id as a JSON tag: any character)."""
    tags = json.dumps({INSTANCE_ID: stats.instance})
    return "/search?" + urlencode({"service": stats.service, "tags": tags, "lookback": lookback})


def _form(search: Search, services: list[str], operations: list[str]) -> str:
    options = _options(services or [search.service], search.service)
    known = _options(operations)
    lookbacks = _options(LOOKBACKS, search.lookback)
    return (
        '<form class="search" method="get" action="/">'
        f'<label>service<select name="service">{options}</select></label>'
        '<label>operation<input name="operation" placeholder="any" list="operations" '
        f'value="{escape(search.operation)}"></label>'
        f'<datalist id="operations">{known}</datalist>'
        '<label>min duration (ms)<input name="min_ms" type="number" min="0" step="any" '
        f'value="{search.min_ms:g}"></label>'
        f'<label>window<select name="lookback">{lookbacks}</select></label>'
        '<label>traces shown<input name="limit" type="number" min="1" max="1000" '
        f'value="{search.limit}"></label>'
        '<label class="check"><input type="checkbox" name="errors" value="1"'
        f"{' checked' if search.errors else ''}>errors only</label>"
        '<button type="submit">Search</button></form>'
    )


def _table(traces: list[TraceResult], settings: BrowserSettings) -> str:
    rows = []
    unit = wording.trace_unit(*traces)
    for trace in traces:
        link = f"/trace/{quote(trace.trace_id, safe='')}"
        jaeger = ""
        if settings.jaeger_ui:
            ui = f"{settings.jaeger_ui.rstrip('/')}{link}"
            jaeger = f'<br><a class="muted" href="{escape(ui)}">in Jaeger</a>'
        rows.append(
            "<tr>"
            f'<td><input type="checkbox" name="trace" value="{escape(trace.trace_id)}" '
            f'aria-label="compare {escape(trace.trace_id)}"></td>'
            f'<td class="mono">{escape(wording.iso(trace.start_us) or "")}</td>'
            f'<td><a class="mono" href="{escape(link)}">{escape(trace.trace_id)}</a>{jaeger}</td>'
            f"<td>{escape(trace.root_service)} <b>{escape(trace.root_operation)}</b><br>"
            f'<span class="muted">{trace.span_count} spans, '
            f"{escape(', '.join(trace.services))}</span></td>"
            f'<td class="num">{unit(trace.latency_us)}</td>'
            f"<td>{tags(trace) or 'ok'}</td>"
            f"<td>{why(trace, unit) or '-'}</td>"
            "</tr>"
        )
    head = (
        '<tr><th></th><th>started (UTC)</th><th>trace</th><th>root</th><th class="num">latency'
        "</th><th>status</th><th>culprit, first failure</th></tr>"
    )
    # two traces ticked and compared, as in Jaeger's search results (/compare redirects)
    return (
        f'<form method="get" action="/compare"><table>{head}{"".join(rows)}</table>'
        '<button type="submit">Compare the two ticked traces</button></form>'
    )


def main() -> None:
    """Serve on ``TRACE_BROWSER_HOST:TRACE_BROWSER_PORT`` (uvicorn)."""
    import uvicorn

    settings = BrowserSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        # a request head gets a deadline and the connections a cap, as in every service
        http=bounded_protocol(settings.request_head_timeout_seconds, settings.max_connections),
    )


if __name__ == "__main__":
    main()
