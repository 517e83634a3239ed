"""Span export that rides out a collector outage: retry a failed batch until a deadline.

The SDK's OTLP/gRPC exporter (1.45) gives one batch up after about 7 s: it retries with backoff
1, 2, 4 s inside ``OTEL_EXPORTER_OTLP_TIMEOUT`` (10 s, read in seconds by that exporter) and at
most 6 attempts, then returns FAILURE and the batch is gone. :class:`RetryingSpanExporter` wraps
it and calls it again until ``retry_seconds`` have passed since the batch's first attempt.

The ``BatchSpanProcessor`` exports one batch at a time on its own thread, so while a batch is
retried, spans that finish meanwhile wait in its bounded queue (``OTEL_BSP_MAX_QUEUE_SIZE``); a
request only appends to that queue and never waits for the collector. What is lost past the
bound: a batch still refused after ``retry_seconds`` (logged at ERROR with its size), and, when
the queue is full, its oldest span for each new one (the SDK logs ``Queue full``). Both show as
``spans_ended - spans_exported`` on ``/healthz`` and in the shutdown log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger(__name__)

# Between two calls of the wrapped exporter, which already backs off inside each call.
RETRY_PAUSE_SECONDS = 1.0


class RetryingSpanExporter(SpanExporter):
    """Exports through ``inner``, retrying a refused batch for up to ``retry_seconds``.

    Counts, for ``/healthz`` and the shutdown line: ``exported`` (spans the collector accepted)
    and ``dropped`` (spans given up after the deadline, or refused during shutdown).
    :meth:`stop_retrying` ends every retry at once (shutdown: the flush must stay bounded).
    """

    def __init__(self, inner: SpanExporter, retry_seconds: float, endpoint: str = "") -> None:
        self.inner = inner
        self.retry_seconds = retry_seconds
        self.endpoint = endpoint
        self.exported = 0
        self.dropped = 0
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        first = time.monotonic()
        attempts = 0
        while True:
            result = (
                SpanExportResult.FAILURE if self._stopped.is_set() else self.inner.export(spans)
            )
            attempts += 1
            if result is SpanExportResult.SUCCESS:
                with self._lock:
                    self.exported += len(spans)
                if attempts > 1:
                    log.info(
                        "exported %d spans to %s after %d attempts over %.1f s",
                        len(spans),
                        self.endpoint,
                        attempts,
                        time.monotonic() - first,
                    )
                return result
            waited = time.monotonic() - first
            if self._stopped.is_set() or waited + RETRY_PAUSE_SECONDS > self.retry_seconds:
                with self._lock:
                    self.dropped += len(spans)
                why = "shutting down" if self._stopped.is_set() else f"retried {waited:.1f} s"
                log.error(
                    "dropped %d spans: %s did not accept them (%d attempts, %s)",
                    len(spans),
                    self.endpoint,
                    attempts,
                    why,
                )
                return result
            if attempts == 1:
                log.warning(
                    "export of %d spans to %s failed; retrying for up to %.0f s while new spans "
                    "wait in the queue",
                    len(spans),
                    self.endpoint,
                    self.retry_seconds,
                )
            self._stopped.wait(RETRY_PAUSE_SECONDS)

    def stop_retrying(self) -> None:
        """Give up the batch being retried, and refuse later ones at once; interrupts the wrapped
        exporter's own backoff wait and in-flight call (its shutdown closes the channel)."""
        if not self._stopped.is_set():
            self._stopped.set()
            self.inner.shutdown()

    def shutdown(self) -> None:
        self.stop_retrying()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)
