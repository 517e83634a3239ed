"""How long and how many: the trace browser's bounds on its Jaeger calls.

A page waits for Jaeger in one of the server's worker threads (anyio's pool, 40 by default). A
Jaeger that answers slowly, or trickles its answer, would otherwise hold those threads as long
as it likes, and with all of them held no page, ``/healthz`` included, would answer. So:

* each Jaeger call has a total deadline (``TRACE_BROWSER_JAEGER_TIMEOUT_SECONDS``) and a page's
  calls together another (``TRACE_BROWSER_PAGE_DEADLINE_SECONDS``); past either the call is
  cut off and the page is a 504 (a 502 when Jaeger answered wrongly or not at all);
* at most ``TRACE_BROWSER_MAX_JAEGER_CALLS`` pages talk to Jaeger at once, counted on the event
  loop before a worker thread is taken; one more is answered at once with 503 and
  ``Retry-After``, never queued;
* ``/healthz`` runs on the event loop and needs neither a thread nor a slot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from trace_analysis.errors import AnalyzerError, JaegerDeadlineExceeded

RETRY_AFTER_SECONDS = 2
ErrorPage = Callable[[str, int], HTMLResponse]


class JaegerBusy(Exception):
    """Every Jaeger slot is taken."""


class JaegerSlots:
    """A counter of the pages talking to Jaeger; taking a slot never waits."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.taken = 0
        self.lock = threading.Lock()

    def try_take(self) -> bool:
        with self.lock:
            if self.taken >= self.size:
                return False
            self.taken += 1
            return True

    def give(self) -> None:
        with self.lock:
            self.taken -= 1


def page_deadline(seconds: float) -> float:
    """The ``time.monotonic()`` by which a page's Jaeger calls end."""
    return time.monotonic() + seconds


def jaeger_status(exc: AnalyzerError) -> int:
    """504 for a Jaeger that did not answer in time, 502 for any other failure to read it."""
    return 504 if isinstance(exc, JaegerDeadlineExceeded) else 502


async def jaeger_slot(request: Request) -> AsyncIterator[None]:
    """A route dependency: hold one slot for the request, or raise :class:`JaegerBusy`.
    Async, so it runs on the event loop, before the route takes a worker thread."""
    slots: JaegerSlots = request.app.state.jaeger_slots
    if not slots.try_take():
        raise JaegerBusy()
    try:
        yield
    finally:
        slots.give()


def install(app: FastAPI, max_calls: int, error_page: ErrorPage) -> None:
    """Give ``app`` its slots and answer :class:`JaegerBusy` with ``error_page`` (503)."""
    app.state.jaeger_slots = JaegerSlots(max_calls)

    async def busy(_: Request, __: Exception) -> HTMLResponse:
        page = error_page(
            f"{max_calls} pages are waiting for Jaeger already; try again in a moment", 503
        )
        page.headers["retry-after"] = str(RETRY_AFTER_SECONDS)
        return page

    app.add_exception_handler(JaegerBusy, busy)
