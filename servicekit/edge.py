"""What a client controls at the edge of every service, made safe before anything reads it.

* The health routes are excluded from tracing by exact path (``scope["path"]``), never by a
  pattern over a URL built from the client's ``Host`` header.
* W3C trace-context headers are normalised before the propagators read them: two or more
  ``traceparent`` fields make the incoming context invalid, so the request starts a new trace
  (W3C Trace Context, as its test suite checks) and its ``tracestate`` goes with it; several
  ``baggage`` fields are one baggage (W3C Baggage), so they are joined into one field.
* ``HEAD`` is answered wherever ``GET`` is (RFC 9110 9.3.2), the same response without a body.
* The client's address (``scope["client"]``, which the server span records as
  ``client.address``) is the socket peer, or what trusted proxies say (:mod:`servicekit.forwarded`).
"""

from __future__ import annotations

from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.forwarded import Network, client_address

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
BAGGAGE = b"baggage"


def normalise_trace_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request's headers with trace context the OpenTelemetry propagators read correctly.

    The propagators take only the first field of each name: a second ``traceparent`` would be
    ignored (the first silently wins) and so would a second ``baggage`` line.
    """
    parents = sum(1 for name, _ in headers if name == TRACEPARENT)
    baggage = [value.strip() for name, value in headers if name == BAGGAGE]
    if parents <= 1 and len(baggage) <= 1:
        return headers
    drop = {BAGGAGE} | ({TRACEPARENT, TRACESTATE} if parents > 1 else set())
    kept = [(name, value) for name, value in headers if name not in drop]
    joined = b",".join(v for v in baggage if v)
    return kept + ([(BAGGAGE, joined)] if joined else [])


async def serve_edge(
    app: ASGIApp,
    health_paths: tuple[str, ...],
    trusted_proxies: tuple[Network, ...],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Call ``app`` (the whole instrumented stack) with the edge rules applied to ``scope``."""
    if scope["type"] != "http":
        await app(scope, receive, send)
        return
    headers = list(scope["headers"])
    scope = {**scope, "headers": normalise_trace_headers(headers)}
    peer = scope.get("client")
    if peer and trusted_proxies:
        address = client_address(peer[0], headers, trusted_proxies)
        if address != peer[0]:  # the peer's port is not the client's
            scope["client"] = (address, 0)
    if scope["path"] in health_paths:
        with suppress_http_instrumentation():  # probes are not traffic: no span, no traceresponse
            await app(scope, receive, send)
        return
    await app(scope, receive, send)


class HeadAsGetMiddleware:
    """Route ``HEAD`` as ``GET`` and drop the body, so every GET route (``/healthz`` and
    ``/readyz`` included) answers HEAD with the same status and headers. FastAPI's routes, unlike
    Starlette's, do not add HEAD to GET by themselves. Runs inside the server span and the request
    log, which keep the method the client sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_without_body)
