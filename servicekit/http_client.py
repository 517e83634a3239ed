"""The one instrumented HTTP client services use to call each other.

Every call has a timeout, propagates W3C ``traceparent`` + ``baggage`` (httpx instrumentation),
and turns transport failures into problems the caller can return as-is: a service that is down
becomes 503, one that is too slow becomes 504, one that breaks becomes 502. The failing client
span is marked ERROR by the instrumentation, so the trace shows which hop failed.

A call names the route template it calls (``/orders/{order_id}``) and the values of its
parameters: the client span is named ``{method} {url.template}`` (``GET /orders/{order_id}``,
see :mod:`servicekit.semconv`), one name per route whatever the ids.

The transport under httpx's API is chosen by ``HTTP_CLIENT_TRANSPORT`` (``transport=``):

- ``aiohttp`` (the default): aiohttp's connection pool and C HTTP parser through
  ``httpx-aiohttp``. A call costs about a third of the CPU of httpx's own transport
  (docs/benchmarks.md measures both); the httpx instrumentation wraps it the same way, so the
  client spans are identical.
- ``httpcore``: httpx's own transport (pure Python, on anyio). On every request its pool asks
  each idle connection whether it expired, and anyio's locks and cancel scopes ask asyncio for
  the running loop many times per call, which on Python 3.11 is a ``getpid`` system call each.

Either way a failure reaches the caller as the same httpx exception: a refused connection is
:class:`httpx.ConnectError` (503), a timeout :class:`httpx.TimeoutException` (504), a peer that
closes mid-answer :class:`httpx.RemoteProtocolError` (503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from servicekit.deadline import HEADER
from servicekit.problems import ProblemError
from servicekit.semconv import URL_TEMPLATE_EXTENSION, name_client_span

DEADLINE_GRACE_SECONDS = 0.5
TRANSPORTS = ("aiohttp", "httpcore")
# A pooled connection is dropped after 2 s idle: uvicorn closes one after 5 s
# (``timeout_keep_alive``), and a request sent on a connection the server is closing at that
# moment is lost ("Server disconnected"), so the client must let go first.
KEEPALIVE_SECONDS = 2.0
LIMITS = httpx.Limits(
    max_connections=200, max_keepalive_connections=50, keepalive_expiry=KEEPALIVE_SECONDS
)


class _Aiohttp(AiohttpTransport):
    """``httpx-aiohttp``'s transport, raising the httpx exception httpx's own transport would:
    the package maps every ``aiohttp.ClientConnectionError`` (a refused connection, a peer
    that hung up) to ``ConnectTimeout``, which would turn a service that is down into a 504."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except httpx.TransportError as exc:
            raise _like_httpcore(exc, request) from exc.__cause__
        response.stream = _Body(response.stream, request)  # type: ignore[arg-type]
        return response


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._stream, self._request = stream, request

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        try:
            async for chunk in self._stream:
                yield chunk
        except httpx.TransportError as exc:
            raise _like_httpcore(exc, self._request) from exc.__cause__

    async def aclose(self) -> None:
        await self._stream.aclose()


def _like_httpcore(exc: httpx.TransportError, request: httpx.Request) -> httpx.TransportError:
    cause = exc.__cause__
    kind: type[httpx.TransportError]
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(cause, (aiohttp.ServerTimeoutError, TimeoutError)):
        kind = httpx.ReadTimeout
    elif isinstance(cause, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError
    elif isinstance(cause, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        kind = httpx.RemoteProtocolError
    elif isinstance(cause, aiohttp.ClientConnectionError):
        # The connection broke once open (reset, "Cannot write to closing transport" as the
        # server closes it, ...): the request may have gone out, as with httpcore's ReadError.
        kind = httpx.ReadError
    else:
        return exc
    return kind(str(exc) or type(cause).__name__, request=request)


def make_transport(name: str, limits: httpx.Limits = LIMITS) -> httpx.AsyncBaseTransport:
    """The transport ``name`` (one of :data:`TRANSPORTS`) with the pool ``limits``; a
    ``ValueError`` names the known ones."""
    if name == "aiohttp":
        return _Aiohttp(limits=limits)
    if name == "httpcore":
        return httpx.AsyncHTTPTransport(limits=limits)
    raise ValueError(f"unknown HTTP client transport {name!r}; known: {', '.join(TRANSPORTS)}")


class Downstream:
    """A named downstream service (``inventory-service`` ...) reached through one pooled client."""

    def __init__(
        self,
        name: str,
        base_url: str,
        timeout_seconds: float,
        tracer_provider: trace.TracerProvider,
        transport: httpx.AsyncBaseTransport | str = "aiohttp",
    ) -> None:
        """``transport``: a name from :data:`TRANSPORTS`, or a transport object (the in-process
        tests pass ``httpx.ASGITransport``)."""
        self.name = name
        self.timeout_seconds = timeout_seconds
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_seconds),
            transport=make_transport(transport) if isinstance(transport, str) else transport,
        )
        HTTPXClientInstrumentor.instrument_client(
            self.client, tracer_provider=tracer_provider, request_hook=name_client_span
        )

    async def request(
        self,
        method: str,
        template: str,
        path_params: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send ``method`` to the route ``template`` (``/orders/{order_id}``), its parameters
        filled from ``path_params``, each percent-encoded whole (a ``/`` in a value stays in
        that segment); ``kwargs`` go to ``httpx.AsyncClient.request``.

        Raise :class:`ProblemError` when the service cannot answer (503, 504 or 502), and 431
        when it refused the header fields this request forwards. Other HTTP error
        statuses are returned, not raised: what a 4xx means is the caller's domain. A template
        naming a parameter ``path_params`` lacks raises ``KeyError``.
        """
        path = template.format_map({k: quote(v, safe="") for k, v in (path_params or {}).items()})
        budget = self.timeout_seconds if timeout is None else timeout
        try:
            # httpx times each phase (connect, each read ...) and its instrumentation marks the
            # client span ERROR. The overall deadline is a backstop bounding the whole call, so a
            # peer trickling bytes cannot hold a request for long past its budget.
            async with asyncio.timeout(budget + DEADLINE_GRACE_SECONDS):
                headers = {**kwargs.pop("headers", {}), HEADER: str(int(budget * 1000))}
                response = await self.client.request(
                    method,
                    path,
                    timeout=budget,
                    headers=headers,
                    extensions={URL_TEMPLATE_EXTENSION: template},
                    **kwargs,
                )
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise self._failed(
                exc, 504, "Downstream timeout", f"{self.name} did not answer within {budget} s"
            ) from exc
        except httpx.TransportError as exc:
            raise self._failed(
                exc, 503, "Downstream unavailable", f"{self.name} is unreachable"
            ) from exc
        if response.status_code == 431:
            # What this service forwards is bounded to fit (the trace state is not forwarded,
            # baggage is cut to W3C's 8192 bytes), so this is not the callee's fault: answer
            # as the edge would have, without naming the callee.
            raise ProblemError(
                431,
                "Request header fields too large",
                "The request's header fields are too large to forward.",
            )
        if response.status_code >= 500:
            status = response.status_code if response.status_code in (503, 504) else 502
            raise ProblemError(
                status,
                "Downstream error",
                f"{self.name} failed with HTTP {response.status_code}.",
                service=self.name,
            )
        return response

    def _failed(self, exc: Exception, status: int, title: str, detail: str) -> ProblemError:
        trace.get_current_span().add_event(
            "downstream.failed",
            {"peer.service": self.name, "error.type": type(exc).__name__, "http.status": status},
        )
        return ProblemError(status, title, f"{detail} ({type(exc).__name__}).", service=self.name)

    async def aclose(self) -> None:
        await self.client.aclose()
