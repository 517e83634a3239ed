"""The trace browser (trace_analysis/browser.py) in a real Chromium, against the real stack:
a user opens the list, searches, and opens a trace; opens a span on everything it recorded
(attributes, the exception's message and stack, resource, its log lines); searches by tags
as Jaeger's UI URL writes them; compares two traces; reads the service map. Nothing they or a
client send runs as markup; nothing but GET is served. Each page's screenshot is written to
the test's directory (``<tmp>/shots``) to look at.

The orders: fast ones, slow ones (a 400 ms baggage fault in inventory-service, as in
test_analyzer_e2e) and out-of-stock ones (failing in inventory-service).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from stackctl.stack import Stack
from stackctl.traces import wait_for_trace
from tests.e2e.devtools import Page, browser
from tests.e2e.test_analyzer_e2e import ALL, SLOW_BAGGAGE, place

ROOT = Path(__file__).resolve().parents[2]
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


def shoot(page: Page, path: Path) -> None:
    """The whole page as a PNG, as a user would see it at 1280 px wide."""
    height = page.evaluate("document.documentElement.scrollHeight")
    page.call(
        "Emulation.setDeviceMetricsOverride",
        width=1280, height=min(height, 6000), deviceScaleFactor=1, mobile=False,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"]))
    page.call("Emulation.clearDeviceMetricsOverride")


def visible(page: Page, selector: str) -> str:
    """The text of the elements matching ``selector`` that are on screen (not in a closed
    ``<details>``), joined."""
    return page.evaluate(
        f"[...document.querySelectorAll({json.dumps(selector)})]"
        ".filter(e => e.offsetHeight > 0).map(e => e.innerText).join('\\n')"
    )


def nothing_cut_off(page: Page) -> None:
    """No horizontal scrolling: long values wrap inside the page's width."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate(
        "[...document.querySelectorAll('pre.stack, td.v')].filter(e => e.offsetHeight > 0)"
        ".every(e => e.scrollWidth <= e.clientWidth + 1)"
    ), "a long value wraps, it is not cut"


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


def test_a_span_opens_on_everything_it_recorded(
    stack: Stack, traces: dict[str, str], page: Page, tmp_path: Path
) -> None:
    """The failed order's page: the header first, then the waterfall with the first failure's
    span open: its status, attributes, exception (type, message, stack), log lines, resource."""
    page.open(f"{stack.browser_url}/trace/{traces['failed']}")
    head = page.text(".head-facts")
    assert "total spans" in head and "depth" in head and "services (2)" in head
    assert "api-gateway: POST /api/orders" in page.text("h1")
    body = page.text()
    assert "p95" not in body and "Per service" not in body, "no window statistics"
    # the first failure's span is open from the start
    opened = visible(page, "details.span[open] > .sd")
    assert "inventory-service POST /inventory/reserve" in opened
    assert "status ERROR: insufficient stock for OUT-OF-STOCK" in opened
    assert "http.response.status_code\t400" in opened, "its attributes"
    assert "exception.type\tinventory_service.store.InsufficientStock" in opened
    assert "exception.message\tinsufficient stock for OUT-OF-STOCK: requested 1" in opened
    stack_trace = visible(page, "details.span[open] pre.stack")
    assert stack_trace.startswith("Traceback (most recent call last):")
    assert "raise InsufficientStock" in stack_trace
    assert "POST /inventory/reserve 400 in" in visible(page, "details.span[open] table.logs")
    # its resource, one click away (as Jaeger's UI folds the process)
    assert "telemetry.sdk.version" not in visible(page, "details.span[open] table.kv")
    page.click("details.span[open] details.resource > summary")
    resource = visible(page, "details.span[open] details.resource table.kv")
    assert "service.name\tinventory-service" in resource
    assert "service.version" in resource and "telemetry.sdk.language\tpython" in resource
    nothing_cut_off(page)
    shoot(page, tmp_path / "shots" / "trace-failed.png")

    # a closed span opens on a click: the root, with its own attributes and log line
    assert page.count("details.span[open]") == 1
    page.click("details.span:not([open]) > summary")
    page.wait_for("document.querySelectorAll('details.span[open]').length === 2")
    root = visible(page, "details.span[open] > .sd")
    assert "http.route\t/api/orders" in root and "http.request.method\tPOST" in root
    assert "POST /api/orders 400 in" in root, "the gateway's request log line"


def test_search_by_tags_as_jaeger_ui_writes_them(
    stack: Stack, traces: dict[str, str], page: Page, tmp_path: Path
) -> None:
    tags = quote(json.dumps({"http.response.status_code": "400"}))
    page.open(f"{stack.browser_url}/search?service=api-gateway&tags={tags}&lookback=1h&limit=20")
    found = page.text("table")
    assert traces["failed"] in found
    assert traces["fast"] not in found and traces["slow"] not in found
    assert page.count("svg.plot circle") >= 1, "the durations are plotted"
    shoot(page, tmp_path / "shots" / "search-tags.png")
    # the key=value form of Jaeger's search box, typed into the form
    page.type_into("input[name=tags]", "fault.kind=latency")
    page.type_into("input[name=minDuration]", "300ms")
    page.click("form.search button")
    page.wait_for(
        "location.search.includes('minDuration=300ms') && document.readyState === 'complete'"
    )
    found = page.text("table")
    assert traces["slow"] in found and traces["failed"] not in found

    # two traces ticked in the results and compared, as in Jaeger's search
    page.open(f"{stack.browser_url}/search?service=api-gateway&lookback=1h&limit=20")
    for kind in ("slow", "fast"):
        page.click(f'input[name=trace][value="{traces[kind]}"]')
    page.click("form[action='/compare'] button")
    pair = f"/trace/{traces['slow']}...{traces['fast']}"  # in the list's order, newest first
    page.wait_for(f"location.pathname === '{pair}' && document.readyState === 'complete'")
    assert page.text("h1") == "Two traces compared"


def test_two_traces_compared_show_what_got_slower(
    stack: Stack, traces: dict[str, str], page: Page, tmp_path: Path
) -> None:
    page.open(f"{stack.browser_url}/trace/{traces['fast']}...{traces['slow']}")
    facts = page.text("ul.facts")
    assert "slower in B: inventory-service POST /inventory/reserve, +" in facts
    assert "15 span(s) in both, 0 only in A, 0 only in B" in facts
    shoot(page, tmp_path / "shots" / "compare.png")
    page.open(f"{stack.browser_url}/trace/{traces['fast']}...{traces['failed']}")
    assert "only in A" in page.text("table:last-of-type"), "the failed order stopped early"


def test_the_service_map_shows_the_four_services_edges(
    stack: Stack, traces: dict[str, str], page: Page, tmp_path: Path
) -> None:
    page.open(f"{stack.browser_url}/dependencies")
    drawn = page.evaluate("[...document.querySelectorAll('svg.map text')].map(t => t.textContent)")
    for service in ("api-gateway", "inventory-service", "order-service", "notification-service"):
        assert service in drawn
    edges = page.text("table")
    for callee in ("inventory-service", "order-service", "notification-service"):
        assert f"api-gateway\t{callee}" in edges
    assert any("errors" in label for label in drawn), "the out-of-stock calls failed"
    shoot(page, tmp_path / "shots" / "dependencies.png")


def test_a_trace_downloads_as_json_the_analyzer_reads(
    stack: Stack, traces: dict[str, str], tmp_path: Path
) -> None:
    response = httpx.get(f"{stack.browser_url}/trace/{traces['slow']}/json", timeout=30)
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    saved = tmp_path / "trace.json"
    saved.write_bytes(response.content)
    result = subprocess.run(
        [sys.executable, str(ROOT / "analyze_traces.py"), "-i", str(saved), "--trace",
         traces["slow"], "--format", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["traces"][0]["span_count"] == 15


def test_span_data_is_shown_not_run(stack: Stack, page: Page, tmp_path: Path) -> None:
    """A span sent straight to the collector (OTLP/HTTP) with markup in its service name,
    name, attributes, event, status message and link: every page shows it as text."""
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    now = time.time_ns()

    def value(text: str) -> dict[str, str]:
        return {"stringValue": text}

    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": HOSTILE,
        "kind": 2,
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 5_000_000),
        "attributes": [
            {"key": HOSTILE, "value": value(HOSTILE)},
            {"key": "http.response.status_code", "value": {"intValue": "500"}},
        ],
        "events": [
            {
                "name": "exception",
                "timeUnixNano": str(now + 1_000_000),
                "attributes": [
                    {"key": "exception.message", "value": value(HOSTILE)},
                    {"key": "exception.stacktrace", "value": value(HOSTILE * 20)},
                ],
            }
        ],
        "links": [{"traceId": "ab" * 16, "spanId": "cd" * 8}],
        "status": {"code": 2, "message": HOSTILE},
    }
    resource = {"attributes": [{"key": "service.name", "value": value("hostile" + HOSTILE)}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    sent = httpx.post(f"http://127.0.0.1:{stack.ports.otlp_http}/v1/traces", json=body, timeout=30)
    assert sent.status_code == 200, sent.text
    wait_for_trace(stack.jaeger_url, trace_id, {"hostile" + HOSTILE})

    page.open(f"{stack.browser_url}/trace/{trace_id}")
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert page.count("img") == 0 and page.count("script") == 0
    assert page.evaluate("document.title") == f"Trace {trace_id}", "no injected script ran"
    assert visible(page, "td.k").count(HOSTILE) == 1 and HOSTILE in visible(page, "pre.stack")
    assert f"status ERROR: {HOSTILE}" in page.text()
    nothing_cut_off(page)
    shoot(page, tmp_path / "shots" / "hostile.png")
    tags = quote(json.dumps({HOSTILE: HOSTILE}))
    service = quote("hostile" + HOSTILE)
    page.open(f"{stack.browser_url}/search?service={service}&tags={tags}&lookback=1h")
    assert trace_id in page.text("table")
    assert page.count("img") == 0 and page.count("script") == 0
    assert page.evaluate("document.title") == "Search traces"
    page.open(f"{stack.browser_url}/dependencies")
    assert page.count("img") == 0 and page.count("script") == 0
