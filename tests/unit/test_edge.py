"""The edge rules in process: trace-context header normalisation, HEAD, Allow, and a client that
hangs up before its body (the real-stack tests are tests/reliability/test_public_edge.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from servicekit import server
from servicekit.edge import normalise_trace_headers
from servicekit.guard import CLIENT_DISCONNECT
from tests.unit.conftest import build_stack

pytestmark = pytest.mark.anyio
TP1 = b"00-a1111111111111111111111111111111-1111111111111111-01"
TP2 = b"00-b2222222222222222222222222222222-2222222222222222-01"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            [(b"traceparent", TP1), (b"tracestate", b"v=1")],
            [(b"traceparent", TP1), (b"tracestate", b"v=1")],
        ),
        (
            [(b"traceparent", TP1), (b"traceparent", TP2), (b"tracestate", b"v=1"), (b"x", b"1")],
            [(b"x", b"1")],
        ),
        ([(b"traceparent", TP1), (b"traceparent", TP1)], []),
        (
            [(b"baggage", b"a=1"), (b"x", b"1"), (b"baggage", b" b=2 ")],
            [(b"x", b"1"), (b"baggage", b"a=1,b=2")],
        ),
        ([(b"baggage", b""), (b"baggage", b"b=2")], [(b"baggage", b"b=2")]),
        ([(b"baggage", b"a=1")], [(b"baggage", b"a=1")]),
    ],
    ids=[
        "one of each",
        "two parents",
        "the same parent twice",
        "two baggage lines",
        "an empty line",
        "one baggage",
    ],
)
def test_normalise_trace_headers(
    headers: list[tuple[bytes, bytes]], expected: list[tuple[bytes, bytes]]
) -> None:
    assert normalise_trace_headers(headers) == expected


async def test_head_answers_like_get_and_405_lists_allow(tmp_path: Path) -> None:
    stack = build_stack(tmp_path)
    get = await stack.client.get("/api/inventory/SKU123")
    head = await stack.client.head("/api/inventory/SKU123")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == get.headers["content-length"]
    refused = await stack.client.put("/api/inventory/SKU123")
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")
    assert (await stack.client.head("/api/orders")).headers["allow"] == "POST"
    await stack.client.aclose()


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("GET", {}, 200),
        ("HEAD", {}, 200),  # routed as GET on a copy of the request
        ("PUT", {}, 405),  # no route serves the method
        ("GET", {"X-Long": "x" * 20_000}, 431),  # refused before routing
    ],
    ids=["GET", "HEAD", "405", "431"],
)
async def test_the_request_log_names_the_route_template_as_the_span_does(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    method: str,
    headers: dict[str, str],
    status: int,
) -> None:
    """Never the path the client sent where the server span has a template: one series per
    route in the logs as in the traces, and no client text."""
    stack = build_stack(tmp_path)
    with caplog.at_level(logging.INFO, logger="servicekit.request"):
        answer = await stack.client.request(method, "/api/inventory/SKU123", headers=headers)
    assert answer.status_code == status
    # the gateway's line (/api/...); inventory-service's, for the call it made, is /inventory/...
    [line] = [r for r in caplog.records if getattr(r, "http.route", "").startswith("/api/")]
    assert getattr(line, "http.request.method") == method
    assert getattr(line, "http.route") == "/api/inventory/{sku}"
    await stack.client.aclose()


async def test_a_client_gone_before_its_body_is_no_400(tmp_path: Path) -> None:
    stack = build_stack(tmp_path)
    app = stack.apps["api-gateway"]
    messages = [{"type": "http.request", "body": b'{"userId": 1', "more_body": True}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/orders",
        "raw_path": b"/api/orders",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"content-length", b"500"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8080),
    }
    await app(scope, receive, send)
    assert sent == [], "nothing is sent to a client that is gone"
    [span] = [
        s
        for s in stack.spans()
        if s.kind is SpanKind.SERVER and s.resource.attributes["service.name"] == "api-gateway"
    ]
    assert "http.response.status_code" not in span.attributes
    assert span.attributes["error.type"] == CLIENT_DISCONNECT
    assert span.status.status_code is StatusCode.UNSET
    assert [e.name for e in span.events] == ["client.disconnect"]
    await stack.client.aclose()


@pytest.mark.anyio
async def test_edge_closures_are_logged_when_their_window_ends(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first closure is logged at once; those within the next window when it ends, not
    only when another closure comes later."""
    monkeypatch.setattr(server, "WARN_EVERY_SECONDS", 0.2)
    warnings = server._Warnings()

    def logged() -> list[dict[str, int]]:  # the server's closure lines only
        return [r.closed for r in caplog.records if r.name == server.log.name]  # type: ignore[attr-defined]

    with caplog.at_level(logging.WARNING, logger=server.log.name):
        warnings.add("head timeout")
        warnings.add("head timeout")
        warnings.add("over MAX_CONNECTIONS")
        assert logged() == [{"head timeout": 1}]
        await asyncio.sleep(0.4)
    assert logged() == [{"head timeout": 1}, {"head timeout": 1, "over MAX_CONNECTIONS": 1}]
