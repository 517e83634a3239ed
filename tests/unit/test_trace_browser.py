"""The trace browser's pages (trace_analysis/browser.py), in process: what it shows of a trace,
that every value from a trace or a search is escaped, and where it listens by default. The real
browser, stack and search are in tests/e2e/test_trace_browser.py."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from tests.unit.test_analyzer_support import FIXTURES
from trace_analysis import browser
from trace_analysis.analyses.analyzer import Analyzer
from trace_analysis.sources.files import iter_file_traces

HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


def analyzed() -> list:  # type: ignore[type-arg]
    analyzer = Analyzer(browser.BrowserSettings().criteria, keep_all=True)
    analyzer.feed(iter_file_traces(FIXTURES / "mixed.json"))
    return analyzer.outcome().traces


def test_it_listens_on_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRACE_BROWSER_HOST", "TRACE_BROWSER_PORT", "JAEGER_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = browser.BrowserSettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 16680)
    assert settings.jaeger_url == "http://127.0.0.1:16686"
    monkeypatch.setenv("TRACE_BROWSER_PORT", "17000")
    assert browser.BrowserSettings().port == 17000


def test_the_list_shows_status_culprit_and_failure() -> None:
    traces = analyzed()
    search = browser.Search("api-gateway", "", 0, False, "1h", 100)
    page = browser._list_page(search, ["api-gateway"], traces, [], browser.BrowserSettings())
    flagged = [t for t in traces if t.slow or t.error]
    assert f"<h2>Flagged ({len(flagged)})</h2>" in page
    assert f"<h2>Recent ({len(traces)})</h2>" in page
    for trace in traces:
        assert f'href="/trace/{trace.trace_id}"' in page
    assert "<b>culprit</b>" in page and "<b>failed</b>" in page


def test_every_value_from_a_trace_or_a_search_is_escaped() -> None:
    trace = dataclasses.replace(
        analyzed()[0], root_service=HOSTILE, root_operation=HOSTILE, services=[HOSTILE]
    )
    search = browser.Search(HOSTILE, HOSTILE, 0, True, "1h", 10)
    settings = browser.BrowserSettings(jaeger_ui=f"http://ui.example/{HOSTILE}")
    page = browser._list_page(search, [HOSTILE], [trace], [HOSTILE], settings)
    assert "<img" not in page and "<script>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert browser._error_page(HOSTILE, 502).body.count(b"<img") == 0


def test_only_get_is_served_and_scripts_are_refused() -> None:
    settings = browser.BrowserSettings(jaeger_url="http://127.0.0.1:9")  # nothing listens
    with TestClient(browser.create_app(settings)) as client:
        assert client.get("/healthz").text == "ok\n"
        assert client.post("/").status_code == 405
        down = client.get("/")
        assert down.status_code == 502 and "cannot reach Jaeger" in down.text
        assert "default-src 'none'" in down.headers["content-security-policy"]
        assert client.get("/trace/xyz").status_code == 400
