"""ASGI middleware in front of every route: request limits and the request log line.

It runs inside the server span (the FastAPI instrumentation wraps the whole stack), so the
request log line carries the trace id, and a rejected request is still a traced request.
"""

from __future__ import annotations

import logging
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.problems import problem_response
from servicekit.redaction import redact

log = logging.getLogger("servicekit.request")
BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


class RequestGuardMiddleware:
    """415 for non-JSON bodies, 413 for bodies over ``max_body_bytes``, one log line per request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, quiet_paths: tuple[str, ...]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.quiet_paths = quiet_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        rejection = self._reject(scope)
        try:
            if rejection is not None:
                await rejection(scope, receive, send_recording)
            else:
                await self.app(scope, self._limited(receive), send_recording)
        finally:
            self._log(scope, status["code"], time.perf_counter() - started)

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
        return None

    def _limited(self, receive: Receive) -> Receive:
        """Enforce the size limit on streamed bodies that declared no Content-Length."""
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    # An HTTPException, as FastAPI turns any other error while reading into 400.
                    raise HTTPException(
                        413, f"Request body is larger than {self.max_body_bytes} bytes."
                    )
            return message

        return limited

    def _log(self, scope: Scope, status: int, elapsed: float) -> None:
        path = scope.get("path", "")
        if path in self.quiet_paths:
            return
        # The route template when one matched; else the path as the client sent it, redacted.
        route = getattr(scope.get("route"), "path", None) or redact(path)
        log.info(
            "request",
            extra={
                "http.request.method": scope.get("method"),
                "http.route": route,
                "http.response.status_code": status,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )
