"""Deadline propagation: a callee never commits work its caller has already given up on.

The caller sends its remaining budget as ``Request-Timeout-Ms``; the callee turns it into a local
deadline on arrival (a relative budget, so clocks need not agree) less a safety margin, and
:func:`check_deadline` refuses to go on once it has passed. Without this, an order-service that
answered a moment too late would store an order whose stock the gateway had already released.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

from servicekit.problems import ProblemError

HEADER = "request-timeout-ms"
SAFETY_MARGIN_SECONDS = 0.1
_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)


def check_deadline() -> None:
    """Raise 504 if the caller's budget for this request has run out."""
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise ProblemError(
            504, "Deadline exceeded", "The caller's timeout passed; nothing was committed."
        )


class DeadlineMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        budget = None
        if scope["type"] == "http":
            raw = dict(scope["headers"]).get(HEADER.encode(), b"")
            if raw.isdigit() and len(raw) < 10:
                budget = int(raw) / 1000
        if budget is None:
            await self.app(scope, receive, send)
            return
        token = _deadline.set(time.monotonic() + budget - SAFETY_MARGIN_SECONDS)
        try:
            await self.app(scope, receive, send)
        finally:
            _deadline.reset(token)
