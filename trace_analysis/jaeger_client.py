"""Reading traces from Jaeger's HTTP query API (``/api/traces``), page by page.

Jaeger answers a search with at most ``limit`` traces and says nothing about the ones it left
out, so a long window cannot be read in one query. The window is read newest first in time
slices: a slice that comes back full may have been cut short, so it is queried again at half
the width; otherwise the next slice is sized for about half a page at the density just seen
(at most four times wider, at least half as wide).
Each trace is yielded once (a trace can match in two slices), decoded one page at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgspec
import requests

from trace_analysis.errors import AnalyzerError
from trace_analysis.jaeger_format import JaegerTrace, decode_envelope, decode_trace

MIN_SLICE_US = 1_000  # below 1 ms, a full page is accepted as it is (and reported)
Progress = Callable[[int, int, int], None]  # (µs of the window read, µs in all, traces)


class _ServiceList(msgspec.Struct):
    data: list[str] | None = None


@dataclass
class JaegerClient:
    """One Jaeger query service; every failure becomes a one-line :class:`AnalyzerError`."""

    base_url: str
    timeout_s: float = 10.0
    session: requests.Session = field(default_factory=requests.Session)
    queries: int = 0

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")

    def search(
        self, service: str, operation: str | None, start_us: int, end_us: int, limit: int
    ) -> list[msgspec.Raw]:
        """One ``/api/traces`` query; the traces found, still encoded."""
        params: dict[str, str | int] = {
            "service": service,
            "start": start_us,
            "end": end_us,
            "limit": limit,
        }
        if operation:
            params["operation"] = operation
        body = self._get("/api/traces", params)
        return decode_envelope(body, f"Jaeger at {self.base_url}")

    def services(self) -> list[str]:
        body = self._get("/api/services", {})
        try:
            return sorted(msgspec.json.decode(body, type=_ServiceList).data or [])
        except msgspec.DecodeError:
            return []

    def _get(self, path: str, params: dict[str, str | int]) -> bytes:
        url = self.base_url + path
        self.queries += 1
        try:
            response = self.session.get(url, params=params, timeout=self.timeout_s)
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise AnalyzerError(f"invalid Jaeger URL {self.base_url!r}: {exc}") from None
        except requests.exceptions.InvalidSchema:
            raise AnalyzerError(
                f"invalid Jaeger URL {self.base_url!r}: use http:// or https://"
            ) from None
        except requests.exceptions.Timeout:
            raise AnalyzerError(
                f"Jaeger at {self.base_url} did not answer within {self.timeout_s:g} s"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise AnalyzerError(
                f"cannot reach Jaeger at {self.base_url} ({_reason(exc)}); is it running? "
                "(set --jaeger-url or JAEGER_URL)"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise AnalyzerError(f"query to Jaeger at {self.base_url} failed: {exc}") from None
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
) -> Iterator[JaegerTrace]:
    """Every trace of ``service`` (and ``operation``) in ``[start_us, end_us]``, newest first.

    Appends to ``warnings`` what the caller should tell the user (a slice that stayed full
    even at the narrowest width, a service Jaeger does not know).
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
        for index, raw in enumerate(page):
            trace = decode_trace(raw, source, index)
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


def _error_text(response: requests.Response) -> str:
    """Jaeger's own error message if the body has one, else the start of the body."""
    try:
        body = response.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            return "; ".join(str(e.get("msg", e)) for e in errors if isinstance(e, dict))
    except ValueError:
        pass
    text = " ".join(response.text.split())
    return text[:200] or "(empty body)"
