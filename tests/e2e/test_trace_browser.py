"""The trace browser (trace_analysis/browser.py) in a real Chromium, against the real stack:
a user opens the list, searches, and opens a trace; nothing they or a client send runs as
markup; nothing but GET is served.

The orders: fast ones, slow ones (a 400 ms baggage fault in inventory-service, as in
test_analyzer_e2e) and out-of-stock ones (failing in inventory-service).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from stackctl.stack import Stack
from stackctl.traces import wait_for_trace
from tests.e2e.devtools import Page, browser
from tests.e2e.test_analyzer_e2e import ALL, SLOW_BAGGAGE, place

HOSTILE = '"><img src=x onerror="document.title=1"><script>document.title=2</script>'
HOSTILE_ID = '"><img src=x onerror="document.title=3">'  # no slash: it stays one path segment


@pytest.fixture(scope="module")
def traces(stack: Stack) -> dict[str, str]:
    place(stack)  # warm-up: the first order after start-up can be slow on its own
    placed = {
        "fast": place(stack),
        "slow": place(stack, headers=SLOW_BAGGAGE),
        "failed": place(stack, "OUT-OF-STOCK"),
    }
    for kind, trace_id in placed.items():
        services = {"api-gateway", "inventory-service"} if kind == "failed" else ALL
        wait_for_trace(stack.jaeger_url, trace_id, services)
    return placed


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with browser(tmp_path / "profile") as page:
        yield page


def rows_of(page: Page, heading: str) -> str:
    """The text of the table after the ``<h2>`` starting with ``heading``."""
    return page.evaluate(
        "(() => { const h = [...document.querySelectorAll('h2')]"
        f".find(e => e.textContent.startsWith({json.dumps(heading)}));"
        " const t = h && h.nextElementSibling; return t ? t.innerText : ''; })()"
    )


def test_navigate_search_and_open_a_trace(stack: Stack, traces: dict[str, str], page: Page) -> None:
    page.open(f"{stack.browser_url}/")
    assert page.evaluate("document.title") == "Trace browser"
    assert page.evaluate("document.querySelector('select[name=service]').value") == "api-gateway"
    known = page.evaluate("[...document.querySelectorAll('#operations option')].map(o => o.value)")
    assert "POST /api/orders" in known, "the service's operations are offered"
    recent, flagged = rows_of(page, "Recent"), rows_of(page, "Flagged")
    assert all(trace_id in recent for trace_id in traces.values())
    assert traces["slow"] in flagged and traces["failed"] in flagged
    assert traces["fast"] not in flagged
    assert "culprit inventory-service POST /inventory/reserve" in flagged
    assert "failed inventory-service POST /inventory/reserve: insufficient stock" in flagged

    # search: failing traces only
    page.click("input[name=errors]")
    page.click("form.search button")
    page.wait_for("location.search.includes('errors=1') && document.readyState === 'complete'")
    recent = rows_of(page, "Recent")
    assert traces["failed"] in recent
    assert traces["fast"] not in recent and traces["slow"] not in recent

    # search: one operation, at least 300 ms, errors off again
    page.click("input[name=errors]")
    page.type_into("input[name=operation]", "POST /api/orders")
    page.type_into("input[name=min_ms]", "300")
    page.click("form.search button")
    page.wait_for("location.search.includes('min_ms=300') && document.readyState === 'complete'")
    recent = rows_of(page, "Recent")
    assert traces["slow"] in recent
    assert traces["fast"] not in recent and traces["failed"] not in recent

    # search: another service's traces
    page.open(f"{stack.browser_url}/?service=inventory-service&lookback=15m")
    assert traces["failed"] in rows_of(page, "Recent")

    # open a trace from the list: its waterfall, critical path and first failure
    page.open(f"{stack.browser_url}/")
    page.click(f'a[href="/trace/{traces["failed"]}"]')
    page.wait_for(f"location.pathname === '/trace/{traces['failed']}'")
    page.wait_for("document.readyState === 'complete' && !!document.querySelector('.wf')")
    body = page.text()
    assert f"Trace {traces['failed']}" in body
    assert "first failure: inventory-service POST /inventory/reserve: insufficient stock" in body
    assert page.count(".wf .bar") >= 4, "a bar per span"
    assert page.count(".wf .bar.cp") >= 2, "the critical path is marked"
    assert page.count(".wf .bar.err") >= 1, "the failing spans are marked"
    page.click("nav.browser a")
    page.wait_for("location.pathname === '/' && document.readyState === 'complete'")


def test_the_slow_trace_names_its_culprit(stack: Stack, traces: dict[str, str], page: Page) -> None:
    page.open(f"{stack.browser_url}/trace/{traces['slow']}")
    body = page.text()
    assert "culprit: inventory-service POST /inventory/reserve" in body
    assert "injected latency 400 in inventory-service" in body


def test_what_a_user_types_is_shown_not_run(
    stack: Stack, traces: dict[str, str], page: Page
) -> None:
    page.open(f"{stack.browser_url}/")
    page.type_into("input[name=operation]", HOSTILE)
    page.click("form.search button")
    page.wait_for("location.search.includes('operation=') && document.readyState === 'complete'")
    assert page.evaluate("document.querySelector('input[name=operation]').value") == HOSTILE
    assert page.count("img") == 0 and page.count("script") == 0
    assert page.evaluate("document.title") == "Trace browser", "no injected script ran"
    page.call("Page.navigate", url=f"{stack.browser_url}/trace/{quote(HOSTILE_ID, safe='')}")
    page.wait_for("location.pathname.startsWith('/trace/') && document.readyState === 'complete'")
    assert page.count("img") == 0 and page.count("script") == 0
    assert "is not a trace id" in page.text()


def test_read_only_loopback_and_clear_errors(stack: Stack, traces: dict[str, str]) -> None:
    with httpx.Client(base_url=stack.browser_url, timeout=30) as client:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            response = client.request(method, "/")
            assert response.status_code == 405 and response.headers["allow"] == "GET"
        page = client.get("/")
        assert "script-src" not in page.headers["content-security-policy"]
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        missing = client.get(f"/trace/{'ab' * 16}")
        assert missing.status_code == 404 and "not found in Jaeger" in missing.text
        assert client.get("/?lookback=1y").status_code == 422
    owner = stack.process("trace-browser")
    assert owner.ports == {"TRACE_BROWSER_PORT": stack.ports.trace_browser}
    assert owner.env["TRACE_BROWSER_HOST"] == "127.0.0.1"
