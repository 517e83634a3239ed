"""The report formats: JSON against its published schema, Markdown, HTML, the terminal table."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from tests.unit.test_analyzer_support import (
    FIXTURES,
    SCHEMA,
    jaeger_export,
    jaeger_span,
    only,
    run_cli,
    tag,
    write,
)

MIXED = FIXTURES / "mixed.json"
FLAGGED = [  # slowest first
    "b0000000000000000000000000000003",
    "51000000000000000000000000000001",
    "5c000000000000000000000000000009",
    "0f000000000000000000000000000006",
    "e1000000000000000000000000000002",
]


@pytest.mark.parametrize(
    "fixture",
    sorted(p.name for p in FIXTURES.glob("*.json")),
)
def test_json_report_matches_the_published_schema(
    capsys: pytest.CaptureFixture[str], fixture: str
) -> None:
    result = run_cli(capsys, "200", "-i", FIXTURES / fixture, "-f", "json")
    assert result.code == 0, result.err
    jsonschema.validate(result.json(), SCHEMA)


def test_json_report_content_is_stable(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_cli(
        capsys, "200", "-i", MIXED, "-f", "json", "--jaeger-url", "http://j:16686/"
    ).json()
    assert report["schema_version"] == 1
    assert [t["trace_id"] for t in report["traces"]] == FLAGGED
    summary = report["summary"]
    assert (summary["traces"], summary["slow"], summary["errors"], summary["flagged"]) == (
        7,
        4,
        2,
        5,
    )
    assert summary["slow_rate"] == round(4 / 7, 4) and summary["incomplete"] == 1
    slow = report["traces"][1]
    assert slow["jaeger_url"] == "http://j:16686/trace/51000000000000000000000000000001"
    assert slow["latency_ms"] == 611.0 and slow["root"] == {
        "service": "api-gateway",
        "operation": "POST /api/orders",
    }
    assert slow["culprit"]["service"] == "inventory-service"
    assert slow["faults"] == [
        {
            "span_id": "b100000000000001",
            "service": "inventory-service",
            "operation": "POST /inventory/reserve",
            "kind": "latency",
            "value": "600",
        }
    ]
    assert report["source"]["kind"] == "file" and report["source"]["input"] == str(MIXED)
    services = {s["service"]: s for s in summary["services"]}
    assert services["api-gateway"]["requests"] == 7
    assert services["inventory-service"]["errors"] == 1
    assert set(services["api-gateway"]) == {
        "service", "requests", "errors", "error_rate", "p50_ms", "p95_ms", "p99_ms", "max_ms"
    }  # fmt: skip


def test_markdown_report_for_a_ci_summary(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "200", "-i", MIXED, "-f", "markdown")
    text = result.out
    assert text.startswith("## Trace analysis: 5 flagged\n")
    for trace_id in FLAGGED:
        assert f"[`{trace_id}`](http://localhost:16686/trace/{trace_id})" in text
    assert "| service | requests | p50 | p95 | p99 | errors | error rate |" in text
    assert "<details><summary>Critical paths</summary>" in text
    table_rows = [line for line in text.splitlines() if line.startswith("| [`")]
    assert len(table_rows) == 5 and all(row.count(" | ") == 5 for row in table_rows)
    top = run_cli(capsys, "200", "-i", MIXED, "-f", "markdown", "--top", "2").out
    assert "... and 3 more." in top


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        if tag in ("script", "link", "img", "iframe") or values.get("src"):
            self.external.append(tag)


def test_html_report_is_self_contained_with_links_and_waterfalls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    html = run_cli(capsys, "200", "-i", MIXED, "-f", "html").out
    parser = _Links()
    parser.feed(html)
    assert parser.external == []  # nothing to fetch: it opens offline
    assert "@import" not in html and "url(" not in html
    for trace_id in FLAGGED:
        assert f"http://localhost:16686/trace/{trace_id}" in parser.hrefs
        assert f"#trace-{trace_id}" in parser.hrefs
        assert f'id="trace-{trace_id}"' in html
    assert html.count('<div class="wf">') == 5
    assert len(re.findall(r'class="bar cp', html)) >= 5  # critical path spans marked
    assert "insufficient stock for OUT-OF-STOCK" in html


def test_html_escapes_what_traces_contain(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = json.loads((FIXTURES / "error_only.json").read_text())
    data["data"][0]["spans"][1]["operationName"] = "<script>alert(1)</script>"
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps(data))
    html = run_cli(capsys, "200", "-i", hostile, "-f", "html").out
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_table_report_reads_well(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    text = run_cli(capsys, "200", "-i", MIXED).out
    assert text.startswith(f"Traces slower than 200 ms or failing: file {MIXED}")
    assert "7 traces (51 spans): 4 slow (57%), 2 failing (29%), 5 flagged" in text
    for trace_id in FLAGGED:
        assert trace_id in text
    assert "culprit order-service POST /orders" in text
    assert "failed inventory-service POST /inventory/reserve" in text
    assert "injected latency 600 in inventory-service" in text
    assert "Per service (requests served)" in text
    top = run_cli(capsys, "200", "-i", MIXED, "--top", "1").out
    assert "... and 4 more" in top


# -- what "slow" was judged on, faults once, a listing that fits a screen ----------------------


def _gateway_trace(trace_id: str, order_ms: float) -> dict:
    """A 300 ms gateway request whose order-service ``POST /orders`` span took ``order_ms``."""
    spans = [
        jaeger_span("g", None, 0, 300, tags=[tag("span.kind", "server")]),
        jaeger_span("o", "g", 10, order_ms, tags=[tag("span.kind", "server")], process="p2"),
    ]
    spans[1]["operationName"] = "POST /orders"
    for span in spans:
        span["traceID"] = trace_id
        for ref in span["references"]:
            ref["traceID"] = trace_id
    export = jaeger_export(spans, p1="api-gateway", p2="order-service")
    export["data"][0]["traceID"] = trace_id
    return export["data"][0]


def test_slow_is_judged_on_the_selected_span_when_asked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(
        tmp_path, "two.json", {"data": [_gateway_trace("a1", 250), _gateway_trace("a2", 2)]}
    )
    select = ["-i", path, "--service", "order-service", "--operation", "POST /orders"]
    by_root = run_cli(capsys, "200", *select)
    assert by_root.out.splitlines()[0].startswith(
        "Traces slower than 200 ms (root span) or failing"
    )
    assert "2 slow" in by_root.out
    by_span = run_cli(capsys, "200", *select, "--slow-by", "span", "-f", "json").json()
    jsonschema.validate(by_span, SCHEMA)
    assert [(t["trace_id"], t["judged_ms"]) for t in by_span["traces"]] == [("a1", 250.0)]
    assert by_span["criteria"]["slow_by"] == {
        "service": "order-service",
        "operation": "POST /orders",
    }
    table = run_cli(capsys, "200", *select, "--slow-by", "span")
    assert table.out.splitlines()[0].startswith(
        "Traces whose order-service 'POST /orders' span is slower than 200 ms, or failing"
    )
    assert "span 250.0 ms" in table.out
    unselected = run_cli(capsys, "200", "-i", path, "--slow-by", "span")
    assert unselected.code == 2 and "give one" in unselected.err


def test_a_fault_is_listed_once_however_many_spans_carry_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fault = [tag("fault.kind", "latency"), tag("fault.value", "500ms")]
    spans = [jaeger_span(name, None if name == "a" else "a", 0, 600, tags=fault) for name in "abc"]
    path = write(tmp_path, "faults.json", jaeger_export(spans))
    table = run_cli(capsys, "200", "-i", path)
    assert "injected latency 500ms in web (3 spans)" in table.out
    assert table.out.count("latency 500ms") == 1
    document = run_cli(capsys, "200", "-i", path, "-f", "json").json()
    assert len(only(document)["faults"]) == 3  # the JSON keeps each span's


def test_the_default_listing_keeps_its_summary_on_a_screen(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    many = {"data": [_gateway_trace(f"b{i:02d}", 250) for i in range(40)]}
    path = write(tmp_path, "many.json", many)
    table = run_cli(capsys, "200", "-i", path)
    lines = table.out.splitlines()
    assert "... and 30 more (raise --top, or --format json for all)" in lines
    assert len(lines) <= 60, len(lines)  # the flagged traces, services and operations
    markdown = run_cli(capsys, "200", "-i", path, "-f", "markdown")
    assert markdown.out.count("| [`b") == 40  # a file holds more: 50 by default
