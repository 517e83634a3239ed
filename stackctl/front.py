"""A front that checks Host, for a loopback backend that cannot: a small streaming reverse proxy.

Jaeger's query API and the collector's OTLP/HTTP receiver are third-party servers that answer
any ``Host``, so a web page rebound to 127.0.0.1 could read every trace or write forged spans
(see :mod:`servicekit.loopback_host`). ``make up`` therefore runs each behind one of these
fronts: the front listens on the published port (``JAEGER_QUERY_PORT``, ``OTLP_HTTP_PORT``),
refuses a foreign ``Host`` with 421 (400 for a malformed one) before anything is forwarded, and
streams everything else to the backend and back, body and answer alike, never holding either
whole. The backend itself must not be reachable by a page: the collector's receiver listens on
a Unix socket (``FRONT_UPSTREAM=unix:/path``), which no browser can open; Jaeger's query
HTTP, which only listens on TCP, serves its API under a random base path that only the front
knows (``FRONT_UPSTREAM_PATH_PREFIX``) and no placeholder page of Jaeger's that could name it.

Bounds: at most ``FRONT_MAX_CONCURRENT_REQUESTS`` exchanges at once (one more gets 503 and
``Retry-After`` at once), each exchange ``FRONT_TIMEOUT_SECONDS`` in all (504 if no answer
came by then; an answer still streaming then is cut off), plus the head deadline and connection
cap of every service's server (``REQUEST_HEAD_TIMEOUT_SECONDS``, ``MAX_CONNECTIONS``).

Run as ``python -m stackctl.front`` with ``FRONT_LISTEN`` (``host:port``) and ``FRONT_UPSTREAM``
(``http://host:port`` or ``unix:/path``); ``stackctl`` does it for the local stack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Receive, Scope, Send

from servicekit.loopback_host import ALLOWED_HOSTS_VARIABLE, HostRule, LoopbackHostMiddleware
from servicekit.server import bounded_protocol
from servicekit.settings import ServerBounds

log = logging.getLogger(__name__)
Respond = Callable[[int, list[tuple[bytes, bytes]]], Awaitable[None]]
RETRY_AFTER_SECONDS = 1  # what a front at its cap asks a client to wait
# RFC 9110, 7.6.1: meant for one connection only, never forwarded; Host is the backend's.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
    }
)


class FrontSettings(BaseSettings):
    """Read from the environment (``FRONT_*``, ``LOOPBACK_ALLOWED_HOSTS`` and the server bounds)."""

    model_config = SettingsConfigDict(env_prefix="front_", extra="ignore")

    listen: str = Field("127.0.0.1:16686", description="host:port the front listens on")
    upstream: str = Field(
        "http://127.0.0.1:16687", description="the backend: http://host:port or unix:/path"
    )
    upstream_path_prefix: str = Field(
        "", description="put before every path sent to the backend (Jaeger's base path)"
    )
    max_concurrent_requests: int = Field(64, ge=1)
    timeout_seconds: float = Field(60.0, gt=0, description="one exchange, in all")


class Front:
    """The proxy, a plain ASGI app (put :class:`LoopbackHostMiddleware` in front of it)."""

    def __init__(
        self,
        upstream: str,
        upstream_path_prefix: str = "",
        max_concurrent_requests: int = 64,
        timeout_seconds: float = 60.0,
    ) -> None:
        if upstream.startswith("unix:"):
            transport = httpx.AsyncHTTPTransport(uds=upstream.removeprefix("unix:"))
            self.base = httpx.URL("http://localhost")
        else:
            transport = httpx.AsyncHTTPTransport()
            self.base = httpx.URL(upstream)
        self.prefix = upstream_path_prefix.rstrip("/").encode()
        self.max_concurrent = max_concurrent_requests
        self.timeout = timeout_seconds
        self.active = 0
        self.client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout_seconds, connect=5.0),
            limits=httpx.Limits(max_connections=max_concurrent_requests),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.active >= self.max_concurrent:
            await _plain(
                send, 503, "busy: try again", [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
            )
            return
        self.active += 1
        try:
            await self._exchange(scope, receive, send)
        finally:
            self.active -= 1

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Nothing to start; on shutdown, close the connections to the backend."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _exchange(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def respond(status: int, headers: list[tuple[bytes, bytes]]) -> None:
            nonlocal started
            started = True
            await send({"type": "http.response.start", "status": status, "headers": headers})

        try:
            async with asyncio.timeout(self.timeout):
                await self._forward(scope, receive, respond, send)
        except (TimeoutError, httpx.TimeoutException):
            if not started:
                await _plain(send, 504, "the backend did not answer in time")
                return
            raise  # cut an answer that outlived the deadline: the client sees it end early
        except httpx.TransportError as exc:
            if not started:
                log.warning("backend unreachable: %s", exc)
                await _plain(send, 502, "the backend cannot be reached")
                return
            raise

    async def _forward(self, scope: Scope, receive: Receive, respond: Respond, send: Send) -> None:
        headers = _forwardable(scope["headers"])
        target = self.prefix + (scope.get("raw_path") or scope["path"].encode())
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        framing = (b"content-length", b"transfer-encoding")
        has_body = any(name in framing for name, _ in scope["headers"])
        request = self.client.build_request(
            scope["method"],
            self.base.copy_with(raw_path=target),
            headers=headers,
            content=_body(receive) if has_body else None,
        )
        response = await self.client.send(request, stream=True)
        try:
            await respond(response.status_code, _forwardable(response.headers.raw))
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


def _forwardable(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The header fields without the hop-by-hop ones and those the Connection field names."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    return [
        (name, value)
        for name, value in headers
        if name.lower() not in HOP_BY_HOP and name.lower() not in named
    ]


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as it arrives, chunk by chunk."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise httpx.ReadError("the client went away")
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _plain(
    send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = f"{status}: {text}\n".encode()
    head = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def create_app(settings: FrontSettings | None = None, rule: HostRule | None = None) -> ASGIApp:
    """The front as an ASGI app: the loopback-Host rule, then the proxy."""
    settings = settings or FrontSettings()
    front = Front(
        settings.upstream,
        settings.upstream_path_prefix,
        settings.max_concurrent_requests,
        settings.timeout_seconds,
    )
    return LoopbackHostMiddleware(front, rule or HostRule.from_env())


def main() -> None:
    import uvicorn

    settings = FrontSettings()
    bounds = ServerBounds()
    host, _, port = settings.listen.rpartition(":")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # httpx logs each request's URL at INFO: it holds the upstream's base path (the secret that
    # keeps Jaeger's own port closed to pages) and whatever a user searched for.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log.info(
        "front on %s for %s; answers loopback Host and %s",
        settings.listen,
        settings.upstream,
        ALLOWED_HOSTS_VARIABLE,
    )
    uvicorn.run(
        create_app(settings),
        host=host.strip("[]"),
        port=int(port),
        log_level="warning",
        http=bounded_protocol(bounds.request_head_timeout_seconds, bounds.max_connections),
    )


if __name__ == "__main__":
    main()
