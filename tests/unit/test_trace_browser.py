"""The trace browser's pages (trace_analysis/browser.py), in process: what it shows of a trace,
that every value from a trace or a search is escaped, and where it listens by default. The real
browser, stack and search are in tests/e2e/test_trace_browser.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from stackctl.ports import Ports
from tests.unit.test_analyzer_live import (  # noqa: F401 (the fixture jaeger)
    FakeJaeger,
    forty_traces,
    jaeger,
    make_trace,
)
from tests.unit.test_analyzer_support import FIXTURES, run_cli
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
    page = browser._list_page(
        search, ["api-gateway"], ["POST /api/orders"], traces, [], browser.BrowserSettings()
    )
    assert '<option value="POST /api/orders"></option>' in page
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
    page = browser._list_page(search, [HOSTILE], [HOSTILE], [trace], [HOSTILE], settings)
    assert "<img" not in page and "<script>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert browser._error_page(HOSTILE, 502).body.count(b"<img") == 0


def test_only_get_is_served_and_scripts_are_refused() -> None:
    settings = browser.BrowserSettings(jaeger_url="http://127.0.0.1:9")  # nothing listens
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        assert client.get("/healthz").text == "ok\n"
        assert client.post("/").status_code == 405
        down = client.get("/")
        assert down.status_code == 502 and "cannot reach Jaeger" in down.text
        assert "default-src 'none'" in down.headers["content-security-policy"]
        assert client.get("/trace/xyz").status_code == 400


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("errors=1", {37, 38, 39}),  # the failing ones are older than the newest 10
        ("min_ms=250", {36, 37}),  # so are the slow ones
        ("errors=1&min_ms=250", {37}),
        ("errors=1&limit=2", {37, 38}),  # the newest matches, at most limit
    ],
)
def test_a_filtered_search_finds_matches_older_than_the_newest_limit(
    jaeger: FakeJaeger,  # noqa: F811 (the fixture imported above)
    query: str,
    expected: set[int],
) -> None:
    """40 traces over 10 minutes; only the oldest fail or are slow. A search shows up to
    ``limit`` traces: the filter is applied to the window, not to the newest ``limit``."""
    forty_traces(jaeger)
    settings = browser.BrowserSettings(jaeger_url=jaeger.url)
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get(f"/?service=api-gateway&limit=10&{query}").text
    shown = {i for i in range(40) if f'href="/trace/{i + 1:032x}"' in page}
    assert shown == expected
    assert f"<h2>Recent ({len(expected)})</h2>" in page


# --- where reports link each trace ------------------------------------------------------------


def json_links(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    result = run_cli(capsys, "200", "-i", FIXTURES / "mixed.json", "-f", "json", *args)
    assert result.code == 0, result.err
    return [trace["jaeger_url"] for trace in result.json()["traces"]]


def test_reports_link_to_jaeger_by_default_and_to_a_given_base(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    links = json_links(capsys, "--jaeger-url", "http://localhost:16686")
    assert links and all(link.startswith("http://localhost:16686/trace/") for link in links)
    links = json_links(capsys, "--link-base", "https://jaeger.example/ui/")
    assert all(link.startswith("https://jaeger.example/ui/trace/") for link in links)
    monkeypatch.setenv("TRACE_LINK_BASE", "http://10.0.0.5:16686")
    assert json_links(capsys)[0].startswith("http://10.0.0.5:16686/trace/")


def test_in_local_mode_reports_link_to_the_trace_browser(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`make up` recorded its ports: a report on its Jaeger links to its trace browser."""
    ports = dataclasses.replace(Ports(), jaeger_query=17686, trace_browser=17680)
    ports.save(tmp_path / "run" / "ports.json")
    monkeypatch.setenv("RUN_DIR", str(tmp_path / "run"))
    links = json_links(capsys, "--jaeger-url", "http://localhost:17686")
    assert all(link.startswith("http://127.0.0.1:17680/trace/") for link in links)
    other = json_links(capsys, "--jaeger-url", "http://localhost:16686")
    assert other[0].startswith("http://localhost:16686/trace/"), "another Jaeger: its own UI"
    remote = json_links(capsys, "--jaeger-url", "http://jaeger.example:17686")
    assert remote[0].startswith("http://jaeger.example:17686/trace/")
