"""uvicorn's HTTP/1.1 protocol with the two slow-client bounds uvicorn itself lacks.

uvicorn (0.54) has ``timeout_keep_alive``, an idle timer *between* requests that every received
byte resets, and ``limit_concurrency``, which answers 503 once a request head is complete. It
has no bound on the time to receive a request head (its issue #157, open since 2018), so a
client that never finishes its head, or trickles it a byte at a time, holds the connection
forever; and nothing refuses a connection over a cap. This subclass of its httptools protocol
adds both:

* ``REQUEST_HEAD_TIMEOUT_SECONDS``: from the connection (or, on a kept-alive connection, the
  first byte of the next request) to the end of the head. When it passes, the client gets a
  408 problem and the connection is closed; a byte every second does not extend it.
* ``MAX_CONNECTIONS``: a connection over the cap gets a 503 problem and is closed at once,
  before anything is read, so one process never holds more.
* A request in absolute form (``GET http://name/path``) names its authority in the target, and
  RFC 9112, 3.2.2 says the server then ignores ``Host``: uvicorn keeps only the path, so the
  target's authority is put in place of every ``Host`` field, for the routes and for the
  loopback-Host rule (:mod:`servicekit.loopback_host`) to see what the request names.
* A response sent before its request body arrived (a route that ignores the body, a 413 or
  415) leaves the client the same head deadline to finish sending that body, then the
  connection is closed. (Closing at once would reset a connection with unread bytes, and the
  client could lose the answer.)

The time to receive the body is bounded one layer up, inside the server span, where a 408 is a
traced answer (:class:`servicekit.guard.RequestGuardMiddleware`). Where this server is not
used (another ASGI server, or uvicorn started by hand), put the bounds in front: a reverse
proxy's ``client_header_timeout``/``client_body_timeout`` and connection limits (nginx), or
Hypercorn/Granian options where they exist.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from servicekit.problems import problem_document

log = logging.getLogger(__name__)
WARN_EVERY_SECONDS = 10.0  # one warning per interval under a flood, with the count


def _raw_problem(status: int, reason: str, title: str, detail: str) -> bytes:
    body = json.dumps(problem_document(status, title, detail, trace_id=None)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def absolute_form_authority(target: bytes) -> bytes | None:
    """The authority of a request target in absolute form (``http://a.example:81/x`` ->
    ``a.example:81``, userinfo kept), or None for the origin form (``/x``) and ``*``."""
    if target[:1] in (b"/", b"*", b""):
        return None
    rest = target.partition(b"://")[2] or target  # authority form (CONNECT) has no scheme
    for end in (b"/", b"?", b"#"):
        rest = rest.partition(end)[0]
    return rest


class _Warnings:
    """Counts closed connections per reason; logs at most every ``WARN_EVERY_SECONDS``, and
    what a window counted at its end (not only when a later closure happens to come)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last = 0.0
        self._pending: asyncio.TimerHandle | None = None

    def add(self, reason: str) -> None:
        """Called on the event loop, from the protocol's callbacks."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        wait = self.last + WARN_EVERY_SECONDS - time.monotonic()
        if wait <= 0:
            self.flush()
        elif self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        self._pending = None
        if self.counts:
            log.warning("connections closed at the edge", extra={"closed": dict(self.counts)})
            self.counts.clear()
        self.last = time.monotonic()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One connection; the bounds are class attributes set by :func:`bounded_protocol`."""

    head_timeout_seconds: float = 10.0
    max_connections: int = 1000
    warnings = _Warnings()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._unread_body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.warnings.add("over MAX_CONNECTIONS")
            transport.write(
                _raw_problem(
                    503,
                    "Service Unavailable",
                    "Too many connections",
                    f"This process holds its maximum of {self.max_connections} connections.",
                )
            )
            transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_unread_body_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a later request on a kept-alive connection
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        authority = absolute_form_authority(self.url)
        if authority is not None:  # scope["headers"] is this list
            self.headers[:] = [(n, v) for n, v in self.headers if n != b"host"]
            self.headers.append((b"host", authority))
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm_unread_body_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        body_pending = not self.pipeline and self.cycle is not None and self.cycle.more_body
        super().on_response_complete()
        if body_pending and not self.transport.is_closing():
            # answered before the body came: the rest of it gets a deadline too
            self._unread_body_timer = self.loop.call_later(
                self.head_timeout_seconds, self._unread_body_timed_out
            )

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _disarm_unread_body_timer(self) -> None:
        if self._unread_body_timer is not None:
            self._unread_body_timer.cancel()
            self._unread_body_timer = None

    def _unread_body_timed_out(self) -> None:
        self._unread_body_timer = None
        if not self.transport.is_closing():
            self.warnings.add("request body not received after the answer")
            self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        self.warnings.add("request head not received in time")
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a response is under way: close after it
            return
        self.transport.write(
            _raw_problem(
                408,
                "Request Timeout",
                "Request timeout",
                f"The request head did not arrive within {self.head_timeout_seconds:g} s.",
            )
        )
        self.transport.close()


def bounded_protocol(head_timeout_seconds: float, max_connections: int) -> type[HttpToolsProtocol]:
    """The protocol class to pass as ``uvicorn.run(..., http=...)``."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "head_timeout_seconds": head_timeout_seconds,
            "max_connections": max_connections,
            "warnings": _Warnings(),
        },
    )
