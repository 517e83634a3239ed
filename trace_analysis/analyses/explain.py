"""``--trace ID``: one trace, explained, from Jaeger (v3 by id, v1 by id as fallback) or a file.

The on-call engineer has a trace id (from a problem+json body, a ``traceresponse`` header, a
log line) and wants to see that trace now, in the terminal: local mode has no Jaeger UI. Every
trace asked for is reported, flagged or not, with its waterfall; an id that is not there is an
error naming where it was looked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from trace_analysis.analyses.analyzer import Analyzer, Outcome
from trace_analysis.errors import AnalyzerError
from trace_analysis.formats.jaeger import JaegerTrace
from trace_analysis.model.results import Criteria

if TYPE_CHECKING:
    from trace_analysis.sources.jaeger_api import JaegerClient

_HEX_ID = re.compile(r"^[0-9a-fA-F]{1,32}$")
_ANY_ID = re.compile(r"^[^\s\x00-\x1f/?#]+$")  # what a file or a URL path can hold as one id
# a whole W3C traceparent / traceresponse value: version-traceid-parentid-flags
_TRACE_HEADER = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$", re.IGNORECASE)


def trace_key(trace_id: str) -> str:
    """A trace id as compared: hex ids lower-case without leading zeros (Jaeger v1 writes 16
    or 32 digits, OTLP always 32); any other id (jaeger-ui's test traces use words) as
    written, as the file reads it."""
    trace_id = trace_id.strip()
    if _HEX_ID.match(trace_id):
        return trace_id.lower().lstrip("0") or "0"
    return trace_id


def check_ids(trace_ids: list[str], from_file: bool) -> list[str]:
    """The ids as given, each checked to be one the source can hold: Jaeger's are hex (1 to
    32 digits); a file's may be any word (jaeger-ui's test traces use such ids), as the
    list of flagged traces shows them (no spaces, no ``/``)."""
    pattern, what = (_ANY_ID, "the id as the file writes it") if from_file else (_HEX_ID, "")
    for trace_id in trace_ids:
        if trace_id.strip() and not trace_id.strip().strip("0"):
            raise AnalyzerError(
                f"--trace {trace_id!r}: an all-zero trace id is invalid (W3C Trace Context, "
                "OTLP); spans written with it are skipped, as they belong to no trace"
            )
        if not pattern.match(trace_id.strip()):
            header = _TRACE_HEADER.match(trace_id.strip())
            raise AnalyzerError(
                f"--trace {trace_id!r} is not a trace id "
                + (f"({what}, without spaces or '/')" if from_file else "(up to 32 hex digits)")
                + (
                    f"; it is a whole traceparent/traceresponse value, whose trace id is "
                    f"{header[1].lower()}: --trace {header[1].lower()}"
                    if header
                    else ""
                )
            )
    return [_written(trace_id) for trace_id in trace_ids]


def _written(trace_id: str) -> str:
    trace_id = trace_id.strip()
    return trace_id.lower() if _HEX_ID.match(trace_id) else trace_id


def from_traces(
    traces: Iterable[JaegerTrace], trace_ids: list[str], where: str
) -> list[JaegerTrace]:
    """The traces with these ids among ``traces`` (a file's), in the order asked for."""
    wanted = {trace_key(trace_id): trace_id for trace_id in trace_ids}
    found: dict[str, JaegerTrace] = {}
    for trace in traces:
        key = trace_key(trace.trace_id)
        if key in wanted and key not in found:
            found[key] = trace
            if len(found) == len(wanted):
                break
    return [_found(found.get(trace_key(t)), t, where) for t in trace_ids]


def from_jaeger(client: JaegerClient, trace_ids: list[str]) -> Iterator[JaegerTrace]:
    """Fetch each trace by id, as they are analyzed."""
    for trace_id in trace_ids:
        padded = trace_id.zfill(32) if _HEX_ID.match(trace_id) else trace_id
        trace = client.trace(padded)
        yield _found(trace, trace_id, f"{client.source} (API {client.used})")


def explain(traces: Iterable[JaegerTrace], criteria: Criteria, trace_ids: list[str]) -> Outcome:
    """Analyze the traces, each reported with its waterfall, in the order asked for."""
    analyzer = Analyzer(criteria, waterfall=True, keep_all=True)
    analyzer.feed(traces)
    outcome = analyzer.outcome()
    order = {trace_key(trace_id): index for index, trace_id in enumerate(trace_ids)}
    outcome.traces.sort(key=lambda result: order.get(trace_key(result.trace_id), len(order)))
    return outcome


def _found(trace: JaegerTrace | None, trace_id: str, where: str) -> JaegerTrace:
    if trace is None:
        raise AnalyzerError(f"trace {trace_id} not found in {where}")
    return trace
