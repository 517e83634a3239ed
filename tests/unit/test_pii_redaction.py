"""Email addresses a client puts in the URL or User-Agent never reach spans or log lines.

The server span records ``url.path``, ``url.query`` and ``user_agent.original`` as the client sent
them, and the request log line names an unmatched path as it came; servicekit redacts them.
"""

from __future__ import annotations

import json
import logging
import re
import time

import pytest

from servicekit.logs import configure_logging
from servicekit.redaction import EMAIL as TEXT_EMAIL
from servicekit.redaction import REDACTED, URL_EMAIL, redact
from tests.unit.conftest import InProcessStack

pytestmark = pytest.mark.anyio
# Any email-shaped text, plain or percent-encoded.
EMAIL = re.compile(r"[\w.+-]+(?:@|%40)[\w-]+\.[\w.]+", re.IGNORECASE)
HOSTILE = [
    "/api/people/bob@example.com?email=alice%40example.com&cc=carol@example.com",
    "/api/orders/dave@example.com",
    "/api/inventory/erin@example.com",
]
USER_AGENT = "crawler/1.0 (+mailto:ops@example.com)"


@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        ("/api/orders/bob@example.com", URL_EMAIL, f"/api/orders/{REDACTED}"),
        ("email=alice%40example.com&x=1", URL_EMAIL, f"email={REDACTED}&x=1"),
        ("e=first!last@example.com", URL_EMAIL, f"e={REDACTED}"),
        ("/api/orders/a%2Fb@example.com", URL_EMAIL, f"/api/orders/{REDACTED}"),
        ("q=%22john%20doe%22%40example.com", URL_EMAIL, f"q={REDACTED}"),
        ("bot (+ops@example.co.uk)", TEXT_EMAIL, f"bot ({REDACTED})"),
        ("bot (+mailto:o'hara@example.com)", TEXT_EMAIL, f"bot (+mailto:{REDACTED})"),
        ("a#b=c/d{e}|f~g@example.com", TEXT_EMAIL, REDACTED),
        ('ua "john doe"@example.com', TEXT_EMAIL, f"ua {REDACTED}"),
        ("x <bob@[192.0.2.1]>", TEXT_EMAIL, f"x <{REDACTED}>"),
        ("/api/orders/abc123", URL_EMAIL, "/api/orders/abc123"),
    ],
)
def test_redact(text: str, pattern: re.Pattern[str], expected: str) -> None:
    assert redact(text, pattern) == expected


@pytest.mark.parametrize(
    "text",
    ["a" * 50_000, "a." * 25_000, "a%4" * 17_000, '"' * 50_000, '\\"' * 25_000, ' "x\\"' * 8000],
)
@pytest.mark.parametrize("pattern", [TEXT_EMAIL, URL_EMAIL], ids=["text", "url"])
def test_redact_takes_linear_time_on_hostile_input(text: str, pattern: re.Pattern[str]) -> None:
    started = time.perf_counter()
    assert redact(text, pattern) == text
    assert time.perf_counter() - started < 0.5


async def test_no_email_from_the_url_or_user_agent_in_spans(stack: InProcessStack) -> None:
    for url in HOSTILE:
        response = await stack.client.get(url, headers={"User-Agent": USER_AGENT})
        assert response.status_code in (404, 422), response.text
    spans = stack.spans()
    servers = [s for s in spans if s.attributes and "url.path" in s.attributes]
    assert len(servers) >= len(HOSTILE), "the requests were traced"
    assert any(REDACTED in str(s.attributes.get("url.path")) for s in servers)
    assert any(REDACTED in str(s.attributes.get("url.query")) for s in servers)
    assert all(s.attributes.get("user_agent.original") != USER_AGENT for s in servers)
    for span in spans:
        texts = [str(v) for v in (span.attributes or {}).values()]
        texts += [str(v) for event in span.events for v in (event.attributes or {}).values()]
        leaks = [t for t in texts if EMAIL.search(t)]
        assert not leaks, f"{span.name}: {leaks}"


async def test_no_email_from_the_url_in_request_log_lines(
    stack: InProcessStack, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("api-gateway", "INFO")
    try:
        for url in HOSTILE:
            await stack.client.get(url, headers={"User-Agent": USER_AGENT})
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    routes = [line["http.route"] for line in lines if line["message"] == "request"]
    assert f"/api/people/{REDACTED}" in routes
    assert "/api/orders/{order_id}" in routes
    assert not [line for line in lines if EMAIL.search(json.dumps(line))]


async def test_junk_trace_context_headers_are_not_echoed_into_logs(
    stack: InProcessStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """The propagators warn about a malformed baggage/tracestate header by quoting it: a client
    could write any text (an address, a token, 64 kB per request) into the service's log."""
    configure_logging("api-gateway", "INFO")
    headers = {
        "baggage": "bob@example.com, x=" + "y" * 9000,
        "tracestate": "alice@example.com",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    try:
        response = await stack.client.get("/api/inventory/SKU123", headers=headers)
        await stack.client.get("/api/inventory/SKU123", headers={"baggage": "carol@example.com"})
    finally:
        logging.getLogger().handlers.clear()
    assert response.status_code == 200
    err = capsys.readouterr().err
    assert '"message": "request"' in err, "the requests were logged"
    assert not EMAIL.search(err)
    assert max(len(line) for line in err.splitlines()) < 2000
