"""ASGI middleware in front of every route: request limits and the request log line.

It runs inside the server span (the FastAPI instrumentation wraps the whole stack), so the
request log line carries the trace id, and a rejected request is still a traced request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from opentelemetry import trace
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.json_members import duplicate_member
from servicekit.problems import RequestProblem, problem_response
from servicekit.redaction import URL_EMAIL, redact, redact_order_ids

log = logging.getLogger("servicekit.request")
BODY_METHODS = {b"POST", b"PUT", b"PATCH"}
# error.type (OpenTelemetry semantic conventions) of a request whose client hung up before its
# body was complete: no response was sent, so there is no http.response.status_code.
CLIENT_DISCONNECT = "client_disconnect"
# Content codings a request body may carry. None is decoded, so only identity (no coding):
# a body labelled gzip is refused with 415 and ``Accept-Encoding: identity`` (RFC 9110 8.4.1,
# RFC 7694), not parsed as if it were plain, and there is no decompression bomb to bound.
ACCEPTED_CODINGS = ("identity",)
MEMBER_ECHO_CHARS = 200  # of a repeated member's path, named in the 400


class RequestGuardMiddleware:
    """415 for non-JSON bodies and for content codings other than ``identity``, 413 for bodies
    over ``max_body_bytes``, 408 for a body not received within ``body_timeout_seconds``, 400
    for a JSON body with a repeated member name (at any depth, named in the answer:
    :mod:`servicekit.json_members`), one log line per request."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        quiet_paths: tuple[str, ...],
        body_timeout_seconds: float = 20.0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.quiet_paths = quiet_paths
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = _Exchange()

        async def send_recording(message: Message) -> None:
            if state.disconnected:
                return  # the client is gone: whatever the app answers was never sent
            if message["type"] == "http.response.start":
                state.status = message["status"]
            await send(message)

        rejection = self._reject(scope)
        try:
            if rejection is not None:
                await rejection(scope, receive, send_recording)
            else:
                await self.app(scope, self._limited(receive, state), send_recording)
        finally:
            if state.disconnected:
                _record_disconnect()
            self._log(scope, state, time.perf_counter() - started)

    def _reject(self, scope: Scope):  # type: ignore[no-untyped-def]
        if scope["method"].encode() not in BODY_METHODS:
            return None
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return problem_response(
                413,
                "Payload too large",
                f"Request body is larger than {self.max_body_bytes} bytes.",
            )
        has_body = (length is not None and length != b"0") or b"transfer-encoding" in headers
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if has_body and ctype != b"application/json":
            return problem_response(
                415,
                "Unsupported media type",
                "Request bodies must be application/json.",
            )
        codings = [  # every Content-Encoding field, not only the last one dict() kept
            c.strip().lower()
            for name, value in scope["headers"]
            if name == b"content-encoding"
            for c in value.decode("latin-1").split(",")
        ]
        refused = [c for c in codings if c and c not in ACCEPTED_CODINGS]
        if has_body and refused:
            return problem_response(
                415,
                "Unsupported content coding",
                f"Request bodies are accepted without a content coding; this one was "
                f"{', '.join(refused)}.",
                headers={"Accept-Encoding": ", ".join(ACCEPTED_CODINGS)},
            )
        return None

    def _limited(self, receive: Receive, state: _Exchange) -> Receive:
        """The body, bounded in size (also when no Content-Length was declared) and in time
        (``body_timeout_seconds`` from the end of the head to the last byte); a client that
        hangs up before its last byte is marked, not answered. The complete body is checked
        for repeated JSON member names."""
        seen = 0
        chunks: list[bytes] = []
        deadline = time.monotonic() + self.body_timeout_seconds

        async def limited() -> Message:
            nonlocal seen
            if state.body_complete:
                return await receive()  # e.g. a wait for the disconnect after the body
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    message = await receive()
            except TimeoutError:
                # HTTPExceptions pass FastAPI's body reading; any other error becomes a 400.
                raise HTTPException(
                    408,
                    f"The request body did not arrive within {self.body_timeout_seconds:g} s.",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] == "http.disconnect":
                state.disconnected = True
            elif message["type"] == "http.request":
                chunk = message.get("body", b"")
                seen += len(chunk)
                chunks.append(chunk)
                state.body_complete = not message.get("more_body", False)
                if seen > self.max_body_bytes:
                    raise HTTPException(
                        413, f"Request body is larger than {self.max_body_bytes} bytes."
                    )
                if state.body_complete and seen:
                    _refuse_duplicate_members(b"".join(chunks))
            return message

        return limited

    def _log(self, scope: Scope, state: _Exchange, elapsed: float) -> None:
        path = scope.get("path", "")
        if path in self.quiet_paths:
            return
        route = _route(scope) or redact_order_ids(redact(path, URL_EMAIL))
        outcome: dict[str, object] = (
            {"error.type": CLIENT_DISCONNECT}
            if state.disconnected
            else {"http.response.status_code": state.status}
        )
        log.info(
            "request",
            extra={
                "http.request.method": scope.get("method"),
                "http.route": route,
                **outcome,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )


def _route(scope: Scope) -> str | None:
    """The route template, as the server span names it (``http.route``): the route that served
    the request; else the one the instrumentation matched for a request answered before routing
    or on a copy of the scope (HEAD routed as GET, 405, 413, 431 ...). None when no route fits
    (a 404): the line then has the path as the client sent it, redacted (addresses, order ids)."""
    route = getattr(scope.get("route"), "path", None)
    if route is None:
        attributes = getattr(trace.get_current_span(), "attributes", None) or {}
        route = attributes.get("http.route")
    return route if isinstance(route, str) else None


def _refuse_duplicate_members(body: bytes) -> None:
    member = duplicate_member(body)
    if member is not None:
        member = member[:MEMBER_ECHO_CHARS]
        raise RequestProblem(
            400,
            "Duplicate member name",
            f"The JSON body names member {member} more than once.",
            member=member,
        )


@dataclass
class _Exchange:
    status: int = 500
    body_complete: bool = False
    disconnected: bool = False  # the client hung up before its body was complete


def _record_disconnect() -> None:
    """On the server span: no response status (none was sent), ``error.type`` and an event. The
    span status stays unset: a client hanging up is not a server error (RFC 9110 has no status
    for it; nginx logs its own 499)."""
    span = trace.get_current_span()
    span.set_attribute("error.type", CLIENT_DISCONNECT)
    span.add_event("client.disconnect", {"message": "the client closed the connection early"})
