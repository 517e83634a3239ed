"""Log lines made readable: ``make logs`` shows each JSON line (the services' python-json-logger,
Jaeger's and the collector's zap) as ``time level message key=value ...``; other lines as they
are. ``--raw`` skips this."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

TIME_KEYS = ("time", "ts", "timestamp")
LEVEL_KEYS = ("level", "severity")
MESSAGE_KEYS = ("message", "msg")
# Fields every line of a process carries, or that only locate the code: noise when reading.
QUIET_KEYS = {"service", "logger", "caller", "resource", "otelcol.component.id", "otelcol.signal"}
QUIET_KEYS |= {"color_message"}  # uvicorn repeats its message with terminal escapes
QUIET_KEYS |= {"otelcol.component.kind", "otelcol.pipeline.id", "stacktrace", "span_id"}
# A service's request line (servicekit's middleware) says its request in these fields.
REQUEST_KEYS = ("http.request.method", "http.route", "http.response.status_code", "duration_ms")


def _clock(value: Any) -> str:
    """``HH:MM:SS.mmm`` (UTC) from an ISO time or epoch seconds; the value itself otherwise."""
    try:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value, UTC)
        else:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00").replace(",", "."))
    except (ValueError, OverflowError, OSError):
        return str(value)
    return moment.strftime("%H:%M:%S.%f")[:-3]


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((record.pop(key) for key in keys if key in record), "")


def readable(line: str) -> str:
    """One log line for a human: a JSON object's time, level and message first, then its other
    fields as ``key=value`` (empty ones left out); anything else unchanged."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    clock, level, text = readable_parts(record)
    return f"{clock} {level:<5} {text}"


def readable_parts(record: dict[str, Any]) -> tuple[str, str, str]:
    """A decoded JSON log line's ``HH:MM:SS.mmm`` time, upper-case level and text (the message,
    then the other fields as ``key=value``), taking those fields out of ``record``."""
    clock = _clock(_first(record, TIME_KEYS))
    level = str(_first(record, LEVEL_KEYS)).upper()
    message = _first(record, MESSAGE_KEYS)
    if "http.request.method" in record:  # "POST /api/orders 201 in 420.8 ms"
        method, route, status, took = (record.pop(key, None) for key in REQUEST_KEYS)
        message = f"{method} {route or record.pop('url.path', '')} {status or '-'}"
        message += f" in {took:.1f} ms" if isinstance(took, int | float) else ""
    fields = " ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in record.items()
        if key not in QUIET_KEYS and value not in (None, "", [], {})
    )
    return clock, level, f"{message}" + (f"  {fields}" if fields else "")
