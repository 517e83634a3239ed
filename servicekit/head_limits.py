"""Refuse an oversized request head before any route sees it: 414 and 431, as problem+json.

uvicorn's httptools parser accepts a request line or header of any size (1 MB was measured), and
the server span records the target and the User-Agent. Bounded here, a client cannot make a
service parse, log or trace tens of kilobytes per request. The answers follow the RFCs: 414 URI
Too Long for a request-target over ``MAX_URI_BYTES`` (RFC 9110, 15.5.15), 431 Request Header
Fields Too Large when the header fields add up to more than ``MAX_HEADER_BYTES`` (RFC 6585, 5).
It runs inside the server span, so a refused request is still traced (its attributes cut to
``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``).
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from servicekit.problems import problem_response


class RequestHeadLimitMiddleware:
    """414 for a long request-target (path and query), 431 for large header fields."""

    def __init__(self, app: ASGIApp, max_uri_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_uri_bytes = max_uri_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rejection = self._reject(scope) if scope["type"] == "http" else None
        if rejection is None:
            await self.app(scope, receive, send)
        else:
            await rejection(scope, receive, send)

    def _reject(self, scope: Scope) -> Response | None:
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        target = len(path) + (len(query) + 1 if query else 0)
        if target > self.max_uri_bytes:
            return problem_response(
                414,
                "URI too long",
                f"The request target is {target} bytes; the limit is {self.max_uri_bytes}.",
            )
        # Each field as sent: name, ": ", value and CRLF.
        size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if size > self.max_header_bytes:
            return problem_response(
                431,
                "Request header fields too large",
                f"The header fields are {size} bytes; the limit is {self.max_header_bytes}.",
            )
        return None
