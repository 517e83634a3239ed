"""Reading traces from Jaeger's HTTP query API, page by page, or one trace by id.

Jaeger v2's stable query API is ``/api/v3`` (OTLP JSON): ``GET /api/v3/traces`` searches,
``GET /api/v3/traces/{traceId}`` fetches one trace. The v1 routes (``/api/traces``,
``/api/services``) are internal to the Jaeger UI, and Jaeger after v2.20 drops their search.
So v3 is asked first and v1 only where v3 is absent (Jaeger 1.x: the route answers a plain
``404 page not found`` or the UI's HTML page); ``--api v3|v1`` forces one. A v3 search takes
the snake_case parameters every 2.x release reads (``query.service_name``,
``query.start_time_min`` in RFC 3339 with nanoseconds, ...) and answers one ``resourceSpans``
list mixing the traces found, grouped here by trace id; a 404 ``No traces found`` is an empty
page, not a failure.

Jaeger answers a search with at most ``limit`` traces and says nothing about the ones it left
out, so a long window cannot be read in one query. The window is read newest first in time
slices: a slice that comes back full may have been cut short, so it is queried again at half
the width; otherwise the next slice is sized for about half a page at the density just seen
(at most four times wider, at least half as wide).
Each trace is yielded once (a trace can match in two slices), decoded one page at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import msgspec
import requests

from trace_analysis.errors import AnalyzerError, JaegerDeadlineExceeded, JaegerUnreachable
from trace_analysis.formats import otlp
from trace_analysis.formats.jaeger import JaegerTrace, Span, decode_envelope, decode_trace
from trace_analysis.sources.abortable import abortable_session, within

MIN_SLICE_US = 1_000  # below 1 ms, a full page is accepted as it is (and reported)
APIS = ("auto", "v3", "v1")
OPERATIONS_NAMED = 20  # in the hint for an unknown operation
Progress = Callable[[int, int, int], None]  # (µs of the window read, µs in all, traces)
Page = list[JaegerTrace | msgspec.Raw]  # v3 traces come decoded, v1 traces still encoded


class _ServiceList(msgspec.Struct):
    data: list[str] | None = None  # v1
    services: list[str] | None = None  # v3


class _Operation(msgspec.Struct):
    name: str


class _OperationList(msgspec.Struct):
    data: list[str] | None = None  # v1
    operations: list[_Operation] | None = None  # v3


class _V3Result(msgspec.Struct):
    resource_spans: list[otlp.ResourceSpans] | None = msgspec.field(
        default=None, name="resourceSpans"
    )


class _V3Answer(msgspec.Struct):
    result: _V3Result | None = None


_V3_ANSWER = msgspec.json.Decoder(_V3Answer)


@dataclass
class JaegerClient:
    """One Jaeger query service; every failure becomes a one-line :class:`AnalyzerError`.

    ``api`` is ``auto`` (v3, else v1 where v3 is absent), ``v3`` or ``v1``; ``used`` says
    which answered, once one has.

    ``timeout_s`` bounds the connect and each read. ``call_deadline_s`` (seconds) bounds each
    call as a whole, from the connect to the answer's last byte, and ``ends_at``
    (``time.monotonic()``) all of them together: past either, the call is cut off
    (:mod:`~trace_analysis.sources.abortable`) and :class:`JaegerDeadlineExceeded` raised. With
    neither (the command line), a Jaeger that keeps sending is waited for.
    """

    base_url: str
    timeout_s: float = 10.0
    api: str = "auto"
    session: requests.Session = field(default_factory=abortable_session)
    queries: int = 0
    used: str | None = None
    call_deadline_s: float | None = None
    ends_at: float | None = None
    # keep each v3 answer on its traces (JaegerTrace.otlp_document): a search by attributes
    # reads them there (a trace by id always keeps it)
    keep_documents: bool = False
    last_body: bytes = b""  # the last search's answer as Jaeger sent it (b"": none found)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.api != "auto":
            self.used = self.api

    @property
    def source(self) -> str:
        return f"Jaeger at {self.base_url}"

    def search(
        self, service: str, operation: str | None, start_us: int, end_us: int, limit: int
    ) -> Page:
        """One search: the traces of ``service`` (and ``operation``) starting in
        ``[start_us, end_us]``, at most ``limit``."""
        if self.used != "v1":
            params: dict[str, str | int] = {
                "query.service_name": service,
                "query.start_time_min": rfc3339(start_us),
                # Jaeger refuses an empty range (min must be before max)
                "query.start_time_max": rfc3339(max(end_us, start_us + 1)),
                "query.num_traces": limit,  # 2.x before 2.19 read only this name
                "query.search_depth": limit,
            }
            if operation:
                params["query.operation_name"] = operation
            found = self._v3("/api/v3/traces", params, "/api/v3/traces")
            if found is not None:
                return list(found.values())
        params = {"service": service, "start": start_us, "end": end_us, "limit": limit}
        if operation:
            params["operation"] = operation
        body = self.last_body = self._get("/api/traces", params)
        return list(decode_envelope(body, self.source))

    def trace(self, trace_id: str) -> JaegerTrace | None:
        """The trace with this id, or None if Jaeger has no such trace."""
        trace_id = trace_id.strip().lower()
        path = f"/api/v3/traces/{quote(trace_id, safe='')}"
        if self.used != "v1":
            found = self._v3(path, {}, "/api/v3/traces/{id}")
            if found is not None:
                return _merged(found, trace_id)
        response = self._request(f"/api/traces/{quote(trace_id, safe='')}", {})
        if response.status_code == 404:
            return None
        body = self._check(response, "/api/traces/{id}")
        raws = decode_envelope(body, self.source)
        if not raws:
            return None
        return decode_trace(raws[0], self.source, 0)

    def services(self) -> list[str]:
        path = "/api/v3/services" if self.used == "v3" else "/api/services"
        body = self._get(path, {})
        try:
            answer = msgspec.json.decode(body, type=_ServiceList)
        except msgspec.DecodeError:
            return []
        return sorted(answer.services or answer.data or [])

    def operations(self, service: str) -> list[str]:
        """The operation names Jaeger knows for ``service``, sorted (v3, else v1)."""
        if self.used == "v1":
            path, params = f"/api/services/{quote(service, safe='')}/operations", {}
        else:
            path, params = "/api/v3/operations", {"service": service}
        try:
            answer = msgspec.json.decode(self._get(path, params), type=_OperationList)
        except msgspec.DecodeError:
            return []
        names = answer.data or [operation.name for operation in answer.operations or []]
        return sorted(names)

    def _v3(
        self, path: str, params: dict[str, str | int], label: str
    ) -> dict[str, JaegerTrace] | None:
        """A v3 answer's traces by id ({} for "No traces found"); None if this Jaeger has no
        v3 API and ``--api`` allows falling back to v1."""
        response = self._request(path, params)
        content_type = response.headers.get("content-type", "")
        error = otlp.v3_error_message(response.content)
        absent = response.status_code == 404 and error is None
        if absent or (response.status_code == 200 and "html" in content_type):
            if self.api == "v3":
                raise AnalyzerError(
                    f"{self.source} has no /api/v3 query API (HTTP {response.status_code} "
                    f"to {label}): a Jaeger 1.x? try --api v1"
                )
            self.used = "v1"
            return None
        self.used = "v3"
        self.last_body = b""
        if response.status_code == 404:
            return {}  # {"error": {"httpCode": 404, "message": "No traces found"}}
        body = self.last_body = self._check(response, label)
        try:
            answer = _V3_ANSWER.decode(body)
        except msgspec.DecodeError as exc:
            raise AnalyzerError(f"{self.source}: {describe(exc)}") from None
        by_trace: dict[str, list[Span]] = {}
        if answer.result is not None:
            # one trace by id is shown whole (--trace): every span's HTTP status
            full = label.endswith("{id}")
            otlp.collect_spans(answer.result.resource_spans, by_trace, full)
        traces = {}
        for trace_id, spans in by_trace.items():
            trace = JaegerTrace(trace_id=trace_id, spans=spans)
            trace.prepared = trace.status_read = True
            if full or self.keep_documents:
                trace.otlp_document = body
            traces[trace_id] = trace
        return traces

    def _get(self, path: str, params: dict[str, str | int]) -> bytes:
        return self._check(self._request(path, params), path)

    def _request(self, path: str, params: dict[str, str | int]) -> requests.Response:
        if self.call_deadline_s is None and self.ends_at is None:
            return self._send(path, params, self.timeout_s)
        budget = self._budget()
        with within(self.session, budget) as cutoff:
            try:
                return self._send(path, params, min(self.timeout_s, budget))
            except AnalyzerError:
                if not cutoff.fired:
                    raise
        raise JaegerDeadlineExceeded(
            f"Jaeger at {self.base_url} did not answer within {budget:.3g} s (the deadline of "
            f"one query; it was still sending or silent)"
        )

    def _budget(self) -> float:
        """Seconds the next call may take: ``call_deadline_s``, less if ``ends_at`` is nearer."""
        budget = self.call_deadline_s if self.call_deadline_s is not None else float("inf")
        if self.ends_at is not None:
            left = self.ends_at - time.monotonic()
            if left <= 0:
                raise JaegerDeadlineExceeded(
                    f"the deadline for the queries to Jaeger at {self.base_url} has passed"
                )
            budget = min(budget, left)
        return budget

    def _send(self, path: str, params: dict[str, str | int], timeout_s: float) -> requests.Response:
        url = self.base_url + path
        self.queries += 1
        try:
            return self.session.get(url, params=params, timeout=timeout_s)
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise AnalyzerError(f"invalid Jaeger URL {self.base_url!r}: {exc}") from None
        except requests.exceptions.InvalidSchema:
            raise AnalyzerError(
                f"invalid Jaeger URL {self.base_url!r}: use http:// or https://"
            ) from None
        except requests.exceptions.Timeout:
            raise JaegerDeadlineExceeded(
                f"Jaeger at {self.base_url} did not answer within {timeout_s:.3g} s"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise JaegerUnreachable(
                f"cannot reach Jaeger at {self.base_url} ({_reason(exc)}); is it running? "
                "(set --jaeger-url or JAEGER_URL)",
                self.base_url,
            ) from None
        except requests.exceptions.RequestException as exc:
            raise AnalyzerError(f"query to Jaeger at {self.base_url} failed: {exc}") from None

    def _check(self, response: requests.Response, path: str) -> bytes:
        """The body of a good answer; else a one-line error with Jaeger's own message."""
        content_type = response.headers.get("content-type", "")
        if response.status_code != 200:
            raise AnalyzerError(
                f"Jaeger at {self.base_url} answered HTTP {response.status_code} to {path}: "
                f"{_error_text(response)}"
            )
        if "html" in content_type:
            raise AnalyzerError(
                f"{self.base_url}{path} answered with an HTML page, not Jaeger's JSON API: "
                "is --jaeger-url the Jaeger query address (port 16686 by default)?"
            )
        return response.content


def iter_window(
    client: JaegerClient,
    service: str,
    operation: str | None,
    start_us: int,
    end_us: int,
    page_size: int,
    warnings: list[str],
    progress: Progress | None = None,
    save: Callable[[bytes], object] | None = None,
) -> Iterator[JaegerTrace]:
    """Every trace of ``service`` (and ``operation``) in ``[start_us, end_us]``, newest first.

    Appends to ``warnings`` what the caller should tell the user (a slice that stayed full
    even at the narrowest width, a service Jaeger does not know). ``save`` gets the body of
    every page read (as Jaeger sent it; not those read again narrower), before its traces.
    """
    source = f"Jaeger at {client.base_url}"
    seen: set[str] = set()
    cursor = end_us
    width = end_us - start_us + 1
    while cursor >= start_us:
        low = max(start_us, cursor - width + 1)
        page = client.search(service, operation, low, cursor, page_size)
        if len(page) >= page_size and cursor - low + 1 > MIN_SLICE_US:
            width = max(MIN_SLICE_US, (cursor - low + 1) // 2)
            continue  # maybe cut short: read it again, narrower
        if len(page) >= page_size:
            warnings.append(
                f"more than {page_size} traces within {MIN_SLICE_US // 1000} ms; some were "
                "not read (raise --page-size)"
            )
        if save is not None and page:
            save(client.last_body)
        for index, item in enumerate(page):
            trace = item if isinstance(item, JaegerTrace) else decode_trace(item, source, index)
            if trace.trace_id in seen:
                continue
            seen.add(trace.trace_id)
            yield trace
        # size the next slice for about half a page at the density just seen
        scale = page_size / 2 / max(len(page), 1)
        width = max(MIN_SLICE_US, int((cursor - low + 1) * min(max(scale, 0.5), 4.0)))
        cursor = low - 1
        if progress is not None:
            progress(end_us - max(cursor, start_us - 1), end_us - start_us + 1, len(seen))
    if not seen:
        try:
            known = client.services()
        except AnalyzerError:
            known = []  # only a hint: never fail the run for it
        if known and service not in known:
            warnings.append(f"Jaeger knows no service {service!r}; it knows: {', '.join(known)}")
        elif operation:
            _warn_unknown_operation(client, service, operation, warnings)


def _warn_unknown_operation(
    client: JaegerClient, service: str, operation: str, warnings: list[str]
) -> None:
    """An empty answer for an operation the service never had is a typo (or a file name given
    to ``-o``, which is ``--operation``), not a quiet window: say so, with the known names."""
    try:
        known = client.operations(service)
    except AnalyzerError:
        return  # only a hint: never fail the run for it
    if known and operation not in known:
        shown = ", ".join(known[:OPERATIONS_NAMED])
        more = f" and {len(known) - OPERATIONS_NAMED} more" if len(known) > OPERATIONS_NAMED else ""
        warnings.append(
            f"Jaeger knows no operation {operation!r} of {service}; it knows: {shown}{more}"
        )


def _reason(exc: requests.exceptions.ConnectionError) -> str:
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "No route to host",
        "Temporary failure in name resolution",
        "Network is unreachable",
    ):
        if marker in text:
            return marker.lower()
    return "connection failed"


def rfc3339(us: int) -> str:
    """Epoch µs as RFC 3339 UTC with nanoseconds, as the v3 API parses it."""
    seconds, fraction = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:06d}000Z"


def describe(exc: msgspec.DecodeError) -> str:
    text = str(exc)
    if text.startswith("JSON is malformed") or text.startswith("Input data was truncated"):
        return f"not valid JSON ({text})"
    return f"unexpected shape of the v3 answer: {text}"


def _merged(found: dict[str, JaegerTrace], trace_id: str) -> JaegerTrace | None:
    if not found:
        return None
    return found.get(trace_id) or next(iter(found.values()))


def _error_text(response: requests.Response) -> str:
    """Jaeger's own error message if the body has one (v1 or v3), else the start of it."""
    try:
        body = response.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            return "; ".join(str(e.get("msg", e)) for e in errors if isinstance(e, dict))
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    except ValueError:
        pass
    text = " ".join(response.text.split())
    return text[:200] or "(empty body)"
