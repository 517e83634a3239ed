"""A search as Jaeger's UI writes it in its URL, applied to the traces of a window.

``/search?service=&operation=&tags=&minDuration=&maxDuration=&lookback=&limit=``:

- ``tags``: JSON as Jaeger's UI writes it (``{"http.response.status_code":"500"}``) or the
  ``key=value`` form its search box takes (space separated; a value may be quoted). A trace
  matches when each tag is somewhere in it: an attribute of a span, of its resource or of an
  event, compared as text (``500`` matches the integer 500), as Jaeger's Badger store
  matches them (each tag on its own). ``error=true`` also matches a span whose status is
  ERROR, as Jaeger's UI means it.
- ``minDuration`` / ``maxDuration``: Jaeger's (Go's) durations, ``1.2s``, ``100ms``,
  ``500us``, ``1m``; a trace matches when a span of the searched service (and operation)
  lasted that long, as Jaeger's search matches.
- ``lookback``: Jaeger UI's ``1h`` ... ``7d`` (or any ``Nm``/``Nh``/``Nd``), or ``custom``
  with ``start`` and ``end`` in epoch µs, as its URL writes them.

Jaeger's ``/api/v3`` search takes no tags, so every tag is matched here, on the traces read.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from trace_analysis.errors import AnalyzerError
from trace_analysis.formats.details import Details
from trace_analysis.formats.durations import UNIT_US
from trace_analysis.formats.jaeger import JaegerTrace
from trace_analysis.model.spans import prepare

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h)\s*$")


@dataclass
class TraceFilter:
    """What a trace must have to be found (besides its service and operation, which Jaeger's
    search applies); empty: every trace."""

    service: str = ""
    operation: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    min_us: int | None = None
    max_us: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.tags) or self.min_us is not None or self.max_us is not None

    def matches(self, trace: JaegerTrace, details: Callable[[JaegerTrace], Details]) -> bool:
        """Whether ``trace`` matches; ``details(trace)`` gives its spans' attributes (asked
        for only when there are tags)."""
        if self.min_us is not None or self.max_us is not None:
            prepare(trace)
            if not any(self._lasted(span.duration) for span in self._searched(trace)):
                return False
        if self.tags:
            return _has_tags(details(trace), self.tags)
        return True

    def _searched(self, trace: JaegerTrace) -> Iterator:  # type: ignore[type-arg]
        for span in trace.spans:
            if (not self.service or span.service == self.service) and (
                not self.operation or span.operation == self.operation
            ):
                yield span

    def _lasted(self, duration_us: int) -> bool:
        low, high = self.min_us, self.max_us
        return (low is None or duration_us >= low) and (high is None or duration_us <= high)


def parse_tags(text: str) -> dict[str, str]:
    """Jaeger UI's ``tags``: a JSON object, or ``key=value`` pairs; values as text."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise AnalyzerError(f"tags: not a JSON object ({exc})") from None
        if not isinstance(parsed, dict):
            raise AnalyzerError("tags: not a JSON object")
        return {str(key): _text(value) for key, value in parsed.items()}
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise AnalyzerError(f"tags: {exc}") from None
    tags = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise AnalyzerError(f"tags: {word!r} is not key=value")
        tags[key] = value
    return tags


def parse_duration(text: str, name: str) -> int | None:
    """Jaeger's duration (``1.2s``, ``100ms``, ``500us``) in µs; "" is None."""
    if not text.strip():
        return None
    match = _DURATION.match(text)
    if not match:
        raise AnalyzerError(f"{name}: {text!r} is not a duration (e.g. 100ms, 1.2s, 500us)")
    return round(float(match.group(1)) * UNIT_US[match.group(2)])


def found_in(
    traces: Iterable[JaegerTrace],
    wanted: TraceFilter,
    details: Callable[[JaegerTrace], Details],
) -> Iterator[JaegerTrace]:
    """The traces that match ``wanted``, as they are read."""
    for trace in traces:
        if wanted.matches(trace, details):
            yield trace


def _has_tags(details: Details, tags: dict[str, str]) -> bool:
    missing = dict(tags)
    for spans in details.values():
        for span in spans:
            pairs = [*span.attributes, *span.resource]
            pairs += [pair for event in span.events for pair in event.attributes]
            if span.status_code == "ERROR":
                pairs.append(("error", "true"))
            for key, value in pairs:
                if missing.get(key) == value:
                    del missing[key]
            if not missing:
                return True
    return False


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
