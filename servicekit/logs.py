"""JSON log lines that carry the active ``trace_id`` and ``span_id``.

A log line can then be joined to its trace in Jaeger, and a trace to its log lines, by id.
"""

from __future__ import annotations

import logging
import sys

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

CLIENT_HEADER_LOGGERS = (
    "opentelemetry.baggage.propagation",
    "opentelemetry.trace.propagation.tracecontext",
    "opentelemetry.trace.span",  # TraceState, parsed from the tracestate header
)


class TraceContextFilter(logging.Filter):
    """Stamp every record with the ids of the span that is current when it is logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else None
        record.span_id = format(ctx.span_id, "016x") if ctx.is_valid else None
        return True


def configure_logging(service_name: str, level: str = "INFO") -> None:
    """Route the root logger (and uvicorn's) to one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service_name},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)  # servicekit logs each request itself
    # The W3C propagators warn about a malformed baggage or tracestate header by quoting it, on
    # every request: a client could write any text into our logs (an email address, a token, or
    # 64 kB a line). The header is ignored either way, which is all an operator needs.
    for name in CLIENT_HEADER_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Request lines come from servicekit's middleware, inside the span, with trace ids.
    logging.getLogger("uvicorn.access").disabled = True
