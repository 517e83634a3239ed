"""Refuse an oversized or ambiguous request head before any route sees it: 414, 431 and 400,
as problem+json.

uvicorn's httptools parser accepts a request line or header of any size (1 MB was measured), and
the server span records the target and the User-Agent. Bounded here, a client cannot make a
service parse, log or trace tens of kilobytes per request. The answers follow the RFCs: 414 URI
Too Long for a request-target over ``MAX_URI_BYTES`` (RFC 9110, 15.5.15), 431 Request Header
Fields Too Large when the header fields add up to more than ``MAX_HEADER_BYTES`` (RFC 6585, 5).
It runs inside the server span, so a refused request is still traced (its attributes cut to
``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``).

An HTTP/1.1 request without a ``Host`` field, or with more than one, gets 400 and the connection
is closed (RFC 9112, 3.2: a server MUST answer 400): a proxy in front that routes on one ``Host``
while the service reads another is how requests are misrouted. h11 enforces this; httptools,
which the services run on, does not. HTTP/1.0 needs no ``Host``.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from servicekit.problems import problem_response


class RequestHeadLimitMiddleware:
    """414 for a long request-target (path and query), 431 for large header fields, 400 for an
    HTTP/1.1 request without exactly one ``Host``."""

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
        hosts = sum(1 for name, _ in scope["headers"] if name == b"host")
        if scope.get("http_version") == "1.1" and hosts != 1:
            return problem_response(
                400,
                "Bad request",
                f"An HTTP/1.1 request carries exactly one Host header field; this one had {hosts}"
                " (RFC 9112, 3.2).",
                headers={"Connection": "close"},
            )
        return None
