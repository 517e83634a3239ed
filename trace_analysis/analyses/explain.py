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

_TRACE_ID = re.compile(r"^[0-9a-fA-F]{1,32}$")


def trace_key(trace_id: str) -> str:
    """A trace id as compared: lower-case hex without leading zeros (Jaeger v1 writes 16 or
    32 digits, OTLP always 32)."""
    return trace_id.strip().lower().lstrip("0") or "0"


def check_ids(trace_ids: list[str]) -> list[str]:
    """The ids as given, each checked to be a trace id (1 to 32 hex digits)."""
    for trace_id in trace_ids:
        if not _TRACE_ID.match(trace_id.strip()):
            raise AnalyzerError(f"--trace {trace_id!r} is not a trace id (up to 32 hex digits)")
    return [trace_id.strip().lower() for trace_id in trace_ids]


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
        trace = client.trace(trace_id.zfill(32))
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
