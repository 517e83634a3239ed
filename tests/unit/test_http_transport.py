"""Both transports of the services' HTTP client (servicekit/http_client.py), against a real
loopback server: the same client spans, and every failure the same problem (503, 504), so
``HTTP_CLIENT_TRANSPORT`` changes the CPU a call costs and nothing a caller or a trace sees."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from servicekit.http_client import (
    KEEPALIVE_SECONDS,
    TRANSPORTS,
    Downstream,
    _like_httpcore,
    make_transport,
)
from servicekit.problems import ProblemError
from servicekit.telemetry import configure_process

pytestmark = pytest.mark.anyio

BODY = b'{"sku":"SKU123","available":7}'


CONNECTIONS: list[int] = []  # one entry per connection the server accepted


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``/ok`` answers, ``/slow`` answers after 2 s, ``/cut`` hangs up inside its answer,
    ``/fail`` is a 500; keep-alive, so a pooled connection serves several calls."""
    CONNECTIONS.append(1)
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            target = head.split(b" ", 2)[1]
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            if target == b"/slow":
                await asyncio.sleep(2)
            if target == b"/cut":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                await writer.drain()
                break
            status = b"500 Internal Server Error" if target == b"/fail" else b"200 OK"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    listener = await asyncio.start_server(_serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield f"http://127.0.0.1:{port}"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _call(
    transport: str, base_url: str, template: str, timeout: float = 5.0
) -> tuple[Any, list[Any]]:
    """The answer (or the ProblemError raised) and the finished spans of one call."""
    configure_process()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    downstream = Downstream("inventory-service", base_url, timeout, provider, transport)
    try:
        outcome: Any = await downstream.request(
            "POST", template, json={"sku": "SKU123"}, timeout=timeout
        )
        outcome = (outcome.status_code, outcome.json())
    except ProblemError as exc:
        outcome = exc
    finally:
        await downstream.aclose()
    return outcome, list(exporter.get_finished_spans())


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_call_answers_and_its_connection_is_reused(transport: str, server: str) -> None:
    configure_process()
    provider = TracerProvider()
    downstream = Downstream("inventory-service", server, 5.0, provider, transport)
    try:
        answers = [(await downstream.request("GET", "/ok")).json() for _ in range(5)]
    finally:
        await downstream.aclose()
    assert answers == [{"sku": "SKU123", "available": 7}] * 5


async def test_both_transports_make_the_same_client_span(server: str) -> None:
    spans = {}
    for transport in TRANSPORTS:
        outcome, [span] = await _call(transport, server, "/ok")
        assert outcome == (200, {"sku": "SKU123", "available": 7})
        spans[transport] = (span.name, span.kind, dict(span.attributes), span.status.status_code)
    assert spans["aiohttp"] == spans["httpcore"]
    name, _, attributes, _ = spans["aiohttp"]
    assert name == "POST /ok"
    assert attributes["network.protocol.version"] == "1.1"
    assert attributes["http.response.status_code"] == 200


@pytest.mark.parametrize(
    ("path", "status", "error_type"),
    [
        (None, 503, "ConnectError"),  # nothing listens: the service is down
        ("/slow", 504, "ReadTimeout"),
        # The peer hangs up inside its answer's body: read after the client span ended (the
        # instrumentation ends it at the response head), so the span itself shows a 200.
        ("/cut", 503, None),
        ("/fail", 502, None),
    ],
)
async def test_every_failure_is_the_same_problem_on_both_transports(
    server: str, path: str | None, status: int, error_type: str | None
) -> None:
    base_url = server if path else f"http://127.0.0.1:{_closed_port()}"
    seen = {}
    for transport in TRANSPORTS:
        outcome, [span] = await _call(transport, base_url, path or "/ok", timeout=0.5)
        assert isinstance(outcome, ProblemError), (transport, outcome)
        assert outcome.status == status, transport
        seen[transport] = (span.status.status_code, span.attributes.get("error.type"))
    assert seen["aiohttp"] == seen["httpcore"]
    if error_type is not None:
        code, kind = seen["aiohttp"]
        assert code is StatusCode.ERROR
        assert kind.rsplit(".", 1)[-1] == error_type


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_idle_connection_is_let_go_before_the_server_would_close_it(
    transport: str, server: str
) -> None:
    """uvicorn closes a connection idle for 5 s; a call sent on it as it closes would be lost,
    so the client drops its idle connections first and opens a new one."""
    downstream = Downstream("inventory-service", server, 5.0, TracerProvider(), transport)
    CONNECTIONS.clear()
    try:
        await downstream.request("GET", "/ok")
        await downstream.request("GET", "/ok")
        assert len(CONNECTIONS) == 1, "reused while fresh"
        await asyncio.sleep(KEEPALIVE_SECONDS + 1)
        await downstream.request("GET", "/ok")
    finally:
        await downstream.aclose()
    assert KEEPALIVE_SECONDS < 5
    assert len(CONNECTIONS) == 2, "an idle connection past the expiry is not reused"


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        # A server closing a pooled connection as a request is written to it (SIGTERM).
        (aiohttp.ClientConnectionResetError("Cannot write to closing transport"), httpx.ReadError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
        (aiohttp.ServerConnectionError(), httpx.ReadError),
        (aiohttp.ClientConnectionError(), httpx.ReadError),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout),
    ],
)
def test_a_broken_connection_is_never_taken_for_a_timeout(
    cause: Exception, expected: type[httpx.TransportError]
) -> None:
    """httpx-aiohttp turns every ``ClientConnectionError`` it has no entry for into
    ``ConnectTimeout`` (a 504 here); a connection that broke is a 503 that may have been
    delivered, as on httpx's own transport."""
    request = httpx.Request("POST", "http://inventory-service/inventory/reserve")
    mapped = httpx.ConnectTimeout(str(cause), request=request)
    mapped.__cause__ = cause
    assert type(_like_httpcore(mapped, request)) is expected


def test_an_unknown_transport_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="aiohttp, httpcore"):
        make_transport("curl")
