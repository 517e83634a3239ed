"""One trace's page in the trace browser (trace_analysis/reports/trace_page.py): everything each
span recorded, read the same from OTLP JSON (Jaeger's /api/v3) and Jaeger JSON (/api/traces),
shown escaped; the trace's header first; each span's log lines from the log files (bounded).
The real Chromium, stack and Jaeger are in tests/e2e/test_trace_browser.py."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient

from tests.unit.test_analyzer_live import (  # noqa: F401 (the fixture jaeger)
    FakeJaeger,
    forty_traces,
    jaeger,
    make_trace,
)
from trace_analysis import browser
from trace_analysis.analyses import dependencies, pair, search
from trace_analysis.analyses.explain import explain
from trace_analysis.analyses.self_time import self_times
from trace_analysis.errors import AnalyzerError
from trace_analysis.formats import details
from trace_analysis.formats.jaeger import decode_envelope, decode_trace
from trace_analysis.model.results import WaterfallRow
from trace_analysis.reports import svg
from trace_analysis.reports.trace_page import render_trace_page
from trace_analysis.reports.trace_pair import render_trace_pair
from trace_analysis.sources import span_logs

HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT, CHILD = "00f067aa0ba902b7", "b7ad6b7169203331"
LINKED = "0af7651916cd43dd8448eb211c80319c"
START_US = 1_760_000_000_000_000
STACK = 'Traceback (most recent call last):\n  File "store.py", line 137\n' + "x" * 600
LONG = "y" * 3000  # wraps, never cut


def otlp_document() -> dict[str, Any]:
    """A two-span trace as Jaeger's /api/v3 answers it, every kind of value and field used."""

    def ns(us: int) -> str:
        return str((START_US + us) * 1000)

    root = {
        "traceId": TRACE,
        "spanId": ROOT,
        "name": "POST /api/orders",
        "kind": 2,
        "startTimeUnixNano": ns(0),
        "endTimeUnixNano": ns(20_000),
        "attributes": [
            {"key": "http.response.status_code", "value": {"intValue": "500"}},
            {"key": "customer.note", "value": {"stringValue": HOSTILE}},
            {"key": "long.value", "value": {"stringValue": LONG}},
        ],
        "status": {"code": 2, "message": "order failed"},
    }
    child = {
        "traceId": TRACE,
        "spanId": CHILD,
        "parentSpanId": ROOT,
        "name": "process_order",
        "kind": "SPAN_KIND_INTERNAL",
        "startTimeUnixNano": ns(2_000),
        "endTimeUnixNano": ns(12_000),
        "attributes": [
            {"key": "order.item_count", "value": {"intValue": 3}},
            {"key": "order.total", "value": {"doubleValue": 12.5}},
            {"key": "order.gift", "value": {"boolValue": True}},
            {"key": "order.skus", "value": {"arrayValue": {"values": [{"stringValue": "A1"}]}}},
            {
                "key": "order.meta",
                "value": {"kvlistValue": {"values": [{"key": "k", "value": {"intValue": "1"}}]}},
            },
        ],
        "events": [
            {
                "name": "exception",
                "timeUnixNano": ns(9_000),
                "attributes": [
                    {"key": "exception.type", "value": {"stringValue": "ValueError"}},
                    {"key": "exception.message", "value": {"stringValue": HOSTILE}},
                    {"key": "exception.stacktrace", "value": {"stringValue": STACK}},
                ],
            },
            {"name": "stock.checked", "timeUnixNano": ns(3_000), "attributes": []},
        ],
        "links": [
            {
                "traceId": LINKED,
                "spanId": "1111111111111111",
                "attributes": [{"key": "link.why", "value": {"stringValue": "batch"}}],
            }
        ],
        "status": {"code": "STATUS_CODE_ERROR", "message": "bad order"},
    }

    def block(service: str, scope: str, span: dict[str, Any]) -> dict[str, Any]:
        resource = [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "service.version", "value": {"stringValue": "1.2.3"}},
        ]
        return {
            "resource": {"attributes": resource},
            "scopeSpans": [{"scope": {"name": scope, "version": "0.66b1"}, "spans": [span]}],
        }

    return {
        "result": {
            "resourceSpans": [
                block("api-gateway", "opentelemetry.instrumentation.fastapi", root),
                block("order-service", "order_service", child),
            ]
        }
    }


def jaeger_document() -> dict[str, Any]:
    """The same trace as Jaeger's v1 JSON writes it: tags, logs, process, references."""

    def tag(key: str, value: Any, kind: str = "string") -> dict[str, Any]:
        return {"key": key, "type": kind, "value": value}

    return {
        "traceID": TRACE,
        "spans": [
            {
                "traceID": TRACE,
                "spanID": ROOT,
                "operationName": "POST /api/orders",
                "references": [],
                "startTime": START_US,
                "duration": 20_000,
                "tags": [
                    tag("span.kind", "server"),
                    tag("otel.scope.name", "opentelemetry.instrumentation.fastapi"),
                    tag("otel.scope.version", "0.66b1"),
                    tag("http.response.status_code", 500, "int64"),
                    tag("customer.note", HOSTILE),
                    tag("long.value", LONG),
                    tag("otel.status_code", "ERROR"),
                    tag("otel.status_description", "order failed"),
                    tag("error", True, "bool"),
                ],
                "processID": "p1",
                "warnings": [f"clock skew adjustment disabled; {HOSTILE}"],
            },
            {
                "traceID": TRACE,
                "spanID": CHILD,
                "operationName": "process_order",
                "references": [
                    {"refType": "CHILD_OF", "traceID": TRACE, "spanID": ROOT},
                    {"refType": "FOLLOWS_FROM", "traceID": LINKED, "spanID": "1111111111111111"},
                ],
                "startTime": START_US + 2_000,
                "duration": 10_000,
                "tags": [
                    tag("span.kind", "internal"),
                    tag("otel.scope.name", "order_service"),
                    tag("order.item_count", 3, "int64"),
                    tag("otel.status_code", "ERROR"),
                    tag("otel.status_description", "bad order"),
                ],
                "logs": [
                    {
                        "timestamp": START_US + 9_000,
                        "fields": [
                            tag("event", "exception"),
                            tag("exception.type", "ValueError"),
                            tag("exception.message", HOSTILE),
                            tag("exception.stacktrace", STACK),
                        ],
                    },
                    {"timestamp": START_US + 3_000, "fields": [tag("event", "stock.checked")]},
                ],
                "processID": "p2",
            },
        ],
        "processes": {
            "p1": {"serviceName": "api-gateway", "tags": [tag("service.version", "1.2.3")]},
            "p2": {"serviceName": "order-service", "tags": [tag("service.version", "1.2.3")]},
        },
    }


def one(found: details.Details, span_id: str) -> details.SpanDetails:
    assert len(found[span_id]) == 1
    return found[span_id][0]


@pytest.mark.parametrize("kind", ["otlp", "jaeger"])
def test_every_field_of_a_span_is_read_from_either_format(kind: str) -> None:
    if kind == "otlp":
        found = details.from_otlp(json.dumps(otlp_document()).encode())
    else:
        found = details.from_jaeger(json.dumps({"data": [jaeger_document()]}).encode())
    root, child = one(found, ROOT), one(found, CHILD)
    assert (root.service, root.operation) == ("api-gateway", "POST /api/orders")
    assert root.kind == "server"
    assert (root.status_code, root.status_message) == ("ERROR", "order failed")
    assert root.scope[0] == "opentelemetry.instrumentation.fastapi"
    attributes = dict(root.attributes)
    assert attributes["http.response.status_code"] == "500"
    assert attributes["customer.note"] == HOSTILE and attributes["long.value"] == LONG
    assert ("service.name", "api-gateway") in root.resource
    assert ("service.version", "1.2.3") in root.resource
    assert (child.kind, child.status_code) == ("internal", "ERROR")
    assert child.status_message == "bad order"
    assert child.start_us == START_US + 2_000
    assert [event.name for event in child.events] == ["stock.checked", "exception"], "by time"
    exception = dict(child.events[1].attributes)
    assert exception == {
        "exception.type": "ValueError",
        "exception.message": HOSTILE,
        "exception.stacktrace": STACK,
    }
    assert child.events[1].time_us == START_US + 9_000
    assert [(link.trace_id, link.span_id) for link in child.links] == [
        (LINKED, "1111111111111111")
    ], "the parent is not a link; a reference to another trace is"
    assert "span.kind" not in dict(child.attributes), "lifted into the kind"


def test_otlp_values_keep_their_type_as_text() -> None:
    child = one(details.from_otlp(json.dumps(otlp_document()).encode()), CHILD)
    assert dict(child.attributes) == {
        "order.item_count": "3",
        "order.total": "12.5",
        "order.gift": "true",
        "order.skus": '["A1"]',
        "order.meta": '{"k": 1}',
    }
    assert child.links[0].attributes == [("link.why", "batch")]
    assert child.scope == ("order_service", "0.66b1")


@pytest.mark.parametrize("document", [b"", b"not json", b"[]", b'{"result": 3}', b'{"data": 1}'])
def test_an_unreadable_document_gives_no_details(document: bytes) -> None:
    assert details.from_otlp(document) == {} and details.from_jaeger(document) == {}


def analyzed(document: dict[str, Any]):  # type: ignore[no-untyped-def]
    raw = decode_envelope(json.dumps({"data": [document]}).encode(), "test")[0]
    trace = decode_trace(raw, "test", 0)
    found = details.of_trace(trace)
    outcome = explain([trace], browser.BrowserSettings().criteria, [TRACE])
    return outcome.traces[0], found


def visible_text(page: str) -> str:
    return re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", page, flags=re.S))


def test_the_page_opens_on_the_trace_then_each_span_opens_on_all_it_recorded() -> None:
    trace, found = analyzed(jaeger_document())
    logs = span_logs.TraceLogs(
        by_span={CHILD: [span_logs.LogLine("order-service", "12:00:00.001", "ERROR", HOSTILE)]},
        files=4,
    )
    page = render_trace_page(trace, found, logs, nav="<nav></nav>")
    text = visible_text(page)
    assert "<img" not in page and "<script>" not in page, "every value escaped"
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") >= 4  # attribute, event, log, warning
    # the header: root, start, duration, services, depth, span count; no window statistics
    assert "api-gateway: POST /api/orders" in text and f"Trace {TRACE}" in text
    for label in ("trace start (UTC)", "duration", "services (2)", "depth", "total spans"):
        assert label in text
    assert "p95" not in text and "p99" not in text and "Per service" not in text
    assert "1 span(s) carry Jaeger warnings" in text
    # a <details> per span; the first failure's is open; its exception whole, stack as text
    assert page.count('<details class="span"') == 2
    assert page.count('<details class="span" open>') == 1
    opened = page.split('<details class="span" open>')[1].split("</details>")[0]
    assert "process_order" in opened and "status ERROR: bad order" in opened
    assert f'<pre class="stack">{STACK.replace(chr(34), "&quot;")}</pre>' in opened
    assert "12:00:00.001" in opened and "Log lines <span" in opened
    assert LONG in page, "long values are shown whole (they wrap)"
    assert f'href="/trace/{LINKED}"' in page, "a link to another trace opens it"
    assert "Resource" in opened and "service.version" in opened


def test_a_span_jaeger_did_not_answer_whole_says_so() -> None:
    trace, _ = analyzed(jaeger_document())
    page = render_trace_page(trace, {}, None)
    assert page.count("No details: Jaeger did not answer this span whole.") == 2
    assert "Log lines" not in page, "no log files: no log section"


# --- each span's log lines ---------------------------------------------------------------------


def log_line(trace_id: str | None, span_id: str | None, message: str, **extra: Any) -> str:
    record = {
        "time": "2026-12-07 12:00:00,123",
        "level": "INFO",
        "logger": "servicekit",
        "message": message,
        "service": "order-service",
        "trace_id": trace_id,
        "span_id": span_id,
        **extra,
    }
    return json.dumps(record)


def test_log_lines_are_found_by_trace_and_grouped_by_span(tmp_path: Path) -> None:
    (tmp_path / "order-service.log").write_text(
        "\n".join(
            [
                "plain text line mentioning " + TRACE,
                log_line(TRACE, CHILD, "reserved", sku="A1"),
                log_line("f" * 32, CHILD, "another trace"),
                log_line(TRACE, None, "outside any span"),
                '{"broken json ' + TRACE,
                log_line(TRACE.upper(), ROOT, "upper-case id"),
            ]
        )
        + "\n"
    )
    (tmp_path / "jaeger.log").write_text('{"level":"info","msg":"started"}\n')
    (tmp_path / "notes.txt").write_text(log_line(TRACE, CHILD, "not a .log file") + "\n")
    found = span_logs.trace_logs(tmp_path, TRACE.upper(), max_bytes=1 << 20)
    assert found.files == 2 and not found.partial and not found.truncated
    assert [line.text for line in found.by_span[CHILD]] == ["reserved  sku=A1"]
    line = found.by_span[CHILD][0]
    assert (line.file, line.time, line.level) == ("order-service", "12:00:00.123", "INFO")
    assert [line.text for line in found.by_span[""]] == ["outside any span"]
    assert ROOT not in found.by_span, "the services write ids in lower case, as compared"


def test_only_the_newest_bytes_of_a_log_are_read(tmp_path: Path) -> None:
    old = log_line(TRACE, CHILD, "old") + "\n"
    new = log_line(TRACE, CHILD, "new") + "\n"
    (tmp_path / "api-gateway.log").write_text(old * 100 + new)
    found = span_logs.trace_logs(tmp_path, TRACE, max_bytes=len(new) + 10)
    assert [line.text for line in found.by_span[CHILD]] == ["new"]
    assert found.partial == ["api-gateway.log"]
    assert span_logs.trace_logs(tmp_path / "missing", TRACE, 1024).count == 0


def test_a_trace_with_very_many_lines_is_cut_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(span_logs, "MAX_LINES", 5)
    (tmp_path / "a.log").write_text((log_line(TRACE, CHILD, "again") + "\n") * 9)
    found = span_logs.trace_logs(tmp_path, TRACE, 1 << 20)
    assert found.count == 5 and found.truncated


# --- the browser's routes ---------------------------------------------------------------------


def test_the_browser_shows_details_and_log_lines_and_serves_the_json(
    jaeger: FakeJaeger,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """Through the app, against the stand-in Jaeger (v3 and v1): the details come from
    whichever document Jaeger answered, the log lines from TRACE_BROWSER_LOG_DIR."""
    document = jaeger_document()
    jaeger.traces = [document]
    (tmp_path / "order-service.log").write_text(log_line(TRACE, CHILD, "the line") + "\n")
    settings = browser.BrowserSettings(jaeger_url=jaeger.url, log_dir=str(tmp_path))
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get(f"/trace/{TRACE}")
        download = client.get(f"/trace/{TRACE}/json")
        missing = client.get(f"/trace/{'ab' * 16}/json")
    assert page.status_code == 200
    assert "the line" in page.text and "order-service" in page.text
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment; filename=")
    spans = {
        "v3": lambda body: [
            span["spanId"]
            for block in body["result"]["resourceSpans"]
            for scope in block["scopeSpans"]
            for span in scope["spans"]
        ],
        "v1": lambda body: [span["spanID"] for span in body["data"][0]["spans"]],
    }["v3" if jaeger.v3 else "v1"](msgspec.json.decode(download.content))
    assert sorted(spans) == sorted([ROOT, CHILD])
    assert missing.status_code == 404


# --- /search: Jaeger UI's search URL ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"http.response.status_code":"500"}', {"http.response.status_code": "500"}),
        ('{"http.response.status_code":500,"error":true}', {
            "http.response.status_code": "500", "error": "true"
        }),
        ("http.response.status_code=500 error=true", {
            "http.response.status_code": "500", "error": "true"
        }),
        ('db.query.text="SELECT 1" k=', {"db.query.text": "SELECT 1", "k": ""}),
        ("  ", {}),
    ],
)  # fmt: skip
def test_tags_are_read_as_jaeger_ui_writes_them(text: str, expected: dict[str, str]) -> None:
    assert search.parse_tags(text) == expected


@pytest.mark.parametrize("text", ["[1]", "{bad", "novalue", "=x", 'a="unclosed'])
def test_a_bad_tags_value_is_refused(text: str) -> None:
    with pytest.raises(AnalyzerError, match="tags"):
        search.parse_tags(text)


@pytest.mark.parametrize(
    ("text", "us"),
    [("100ms", 100_000), ("1.2s", 1_200_000), ("500us", 500), ("500µs", 500), ("2m", 120_000_000),
     ("1500ns", 2), ("", None)],
)  # fmt: skip
def test_durations_are_read_as_jaeger_writes_them(text: str, us: int | None) -> None:
    assert search.parse_duration(text, "minDuration") == us


def test_tags_match_attributes_resources_events_and_an_error_status() -> None:
    found = details.from_otlp(json.dumps(otlp_document()).encode())
    wanted = {
        "http.response.status_code": "500",  # an attribute, an integer compared as text
        "service.version": "1.2.3",  # the resource
        "exception.type": "ValueError",  # an event's
    }
    assert search._has_tags(found, wanted)
    assert search._has_tags(found, {"error": "true"}), "a span with status ERROR"
    assert not search._has_tags(found, {**wanted, "exception.type": "KeyError"})
    assert not search._has_tags(found, {"http.response.status_code": "200"})


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tags=error%3Dtrue", {37, 38, 39}),  # older than the newest 10: the window is searched
        ('tags={"error":"true"}', {37, 38, 39}),
        ("minDuration=250ms", {36, 37}),
        ("minDuration=250ms&tags=error%3Dtrue", {37}),
        ("maxDuration=10ms&limit=3", {0, 1, 2}),
        ("tags=error%3Dtrue&limit=2", {37, 38}),
        ("tags=nothing%3Dhere", set()),
    ],
)
def test_a_search_by_jaeger_ui_url_finds_its_traces(
    jaeger: FakeJaeger,  # noqa: F811 (the fixture imported above)
    query: str,
    expected: set[int],
) -> None:
    forty_traces(jaeger)
    settings = browser.BrowserSettings(jaeger_url=jaeger.url)
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get(f"/search?service=api-gateway&limit=10&lookback=1h&{query}")
    assert page.status_code == 200, page.text
    shown = {i for i in range(40) if f'href="/trace/{i + 1:032x}"' in page.text}
    assert shown == expected
    assert f"{len(expected)} trace(s) found" in page.text
    assert ("<svg" in page.text) == bool(expected), "the durations are plotted"


@pytest.mark.parametrize(
    "query",
    ["tags=novalue", "minDuration=fast", "lookback=forever", "lookback=custom&start=9&end=1"],
)
def test_a_bad_search_is_a_400_naming_the_parameter(query: str) -> None:
    settings = browser.BrowserSettings(jaeger_url="http://127.0.0.1:9")  # never asked
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get(f"/search?{query}")
    assert page.status_code == 400 and "<b>error:</b>" in page.text


# --- /trace/<a>...<b>: two traces compared -------------------------------------------------------


def test_two_traces_pair_their_spans_and_name_what_got_slower() -> None:
    a, _ = analyzed(jaeger_document())
    slow = jaeger_document()
    slow["traceID"] = LINKED
    for span in slow["spans"]:
        span["traceID"] = LINKED
    slow["spans"][1]["references"][0]["traceID"] = LINKED  # its parent, in this trace
    slow["spans"][0]["duration"] = 90_000
    slow["spans"][1]["duration"] = 80_000
    extra = dict(slow["spans"][1], spanID="c000000000000001", operationName=HOSTILE, logs=[])
    slow["spans"].append(extra)
    raw = decode_envelope(json.dumps({"data": [slow]}).encode(), "test")[0]
    b = explain([decode_trace(raw, "test", 0)], browser.BrowserSettings().criteria, [LINKED])
    pairs = pair.pair_spans(a, b.traces[0])
    assert [(p.operation, p.change_us) for p in pairs] == [
        ("POST /api/orders", 70_000),
        ("process_order", 70_000),
        (HOSTILE, None),
    ]
    assert pairs[2].a is None, "only in B"
    # the root waited longer, but not on its own: the child is what got slower
    assert [p.operation for p in pair.slower(pairs)] == ["process_order"]
    assert [p.self_change_us for p in pairs[:2]] == [0, 70_000]
    page = render_trace_pair(a, b.traces[0])
    assert "<img" not in page and "<script>" not in page
    assert "B took +70.0 ms" in page and "only in B" in page
    assert "slower in B: order-service process_order, +70.0 ms (+700%) of its own time" in page


def test_the_comparison_route_opens_two_traces_by_jaeger_ui_url(
    jaeger: FakeJaeger,  # noqa: F811 (the fixture imported above)
) -> None:
    now = time.time_ns() // 1000
    jaeger.traces = [make_trace(0, now - 2_000_000), make_trace(1, now - 1_000_000, slow=True)]
    fast, slow = f"{1:032x}", f"{2:032x}"
    settings = browser.BrowserSettings(jaeger_url=jaeger.url)
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get(f"/trace/{fast}...{slow}")
        missing = client.get(f"/trace/{fast}...{'ab' * 16}")
        bad = client.get(f"/trace/{fast}...nothex")
    assert page.status_code == 200
    assert "slower in B: order-service POST /orders, +296.0 ms" in page.text
    assert missing.status_code == 404 and bad.status_code == 400


# --- /dependencies: the service map -------------------------------------------------------------


def trace_of(document: dict[str, Any]):  # type: ignore[no-untyped-def]
    raw = decode_envelope(json.dumps({"data": [document]}).encode(), "test")[0]
    return decode_trace(raw, "test", 0)


def test_the_service_map_counts_calls_and_failures_between_services() -> None:
    graph = dependencies.ServiceMap()
    graph.add_all(trace_of(make_trace(i, START_US + i, error=i % 4 == 0)) for i in range(8))
    graph.add(trace_of(make_trace(0, START_US)))  # found again through another service
    assert graph.traces == 8 and graph.services == {"api-gateway", "order-service"}
    edge = graph.edges[("api-gateway", "order-service")]
    assert (edge.calls, edge.errors, edge.error_rate) == (8, 2, 0.25)
    assert graph.layers() == [["api-gateway"], ["order-service"]]
    picture = svg.service_map(graph)
    assert "8 calls, 25.0% errors" in picture and picture.count("<rect") == 2


def test_a_loop_of_calls_still_draws_every_service_once() -> None:
    graph = dependencies.ServiceMap()
    for caller, callee in (("a", "b"), ("b", "c"), ("c", "a"), ("x", HOSTILE)):
        graph.edges[(caller, callee)] = dependencies.Edge(caller, callee, 1, 0)
        graph.services |= {caller, callee}
    layers = graph.layers()
    assert sorted(service for column in layers for service in column) == sorted(graph.services)
    picture = svg.service_map(graph)
    assert "<img" not in picture and "<script" not in picture


def test_the_dependencies_page_draws_the_map_of_the_window(
    jaeger: FakeJaeger,  # noqa: F811 (the fixture imported above)
) -> None:
    now = time.time_ns() // 1000
    jaeger.traces = [make_trace(i, now - 1_000_000 * (i + 1), error=i == 0) for i in range(4)]
    settings = browser.BrowserSettings(jaeger_url=jaeger.url)
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get("/dependencies?lookback=1h")
        bad = client.get("/dependencies?lookback=soon")
    assert page.status_code == 200 and "<svg" in page.text
    assert "4 calls, 25.0% errors" in page.text
    assert "<td>api-gateway</td><td>order-service</td>" in page.text
    assert bad.status_code == 400


@pytest.mark.parametrize("kind", ["otlp", "jaeger"])
def test_only_the_spans_a_page_draws_are_read_whole(kind: str) -> None:
    """A trace of 50,000 spans draws a few hundred: only those are turned into details."""
    if kind == "otlp":
        found = details.otlp_by_trace(json.dumps(otlp_document()).encode(), {CHILD})[TRACE]
    else:
        found = details.from_jaeger(json.dumps(jaeger_document()).encode(), {CHILD})
    assert list(found) == [CHILD]


def test_a_search_by_trace_ids_lists_those_traces(
    jaeger: FakeJaeger,  # noqa: F811 (the fixture imported above)
) -> None:
    now = time.time_ns() // 1000
    jaeger.traces = [make_trace(i, now - 1_000_000 * (i + 1)) for i in range(3)]
    settings = browser.BrowserSettings(jaeger_url=jaeger.url)
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get(f"/search?traceID={1:032x}&traceID={3:x}")
        missing = client.get(f"/search?traceID={'ab' * 16}")
    assert page.status_code == 200
    shown = {i for i in range(3) if f'href="/trace/{i + 1:032x}"' in page.text}
    assert shown == {0, 2}, "ids as Jaeger's UI takes them, zero-padded or not"
    assert missing.status_code == 404


def test_a_bar_from_start_to_end_keeps_its_duration_inside_the_track() -> None:
    """Not over the span's name: a root bar leaves no room before or after it."""
    trace, found = analyzed(jaeger_document())
    page = render_trace_page(trace, found, None)
    root_row = page.split('<details class="span"')[1]
    assert '<span class="dur in" style="left:calc(0.000% + 4px)">' in root_row
    child_row = page.split('<details class="span"')[2]
    assert '<span class="dur" style="left:calc(' in child_row, "after a bar that leaves room"


@pytest.mark.parametrize(
    ("query", "status", "location"),
    [
        (f"trace={'A' * 32}&trace=12", 303, f"/trace/{'a' * 32}...12"),
        (f"trace={'a' * 32}", 400, None),  # one is not a comparison
        ("", 400, None),
        ("trace=12&trace=//evil.example", 400, None),  # ids only: no other place
        ("trace=1&trace=2&trace=3", 400, None),  # three are not either
    ],
)
def test_two_ticked_traces_lead_to_their_comparison(
    query: str, status: int, location: str | None
) -> None:
    settings = browser.BrowserSettings(jaeger_url="http://127.0.0.1:9")  # never asked
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        response = client.get(f"/compare?{query}", follow_redirects=False)
    assert response.status_code == status
    assert response.headers.get("location") == location


def test_every_listed_trace_can_be_ticked_for_a_comparison() -> None:
    traces = [trace for trace, _ in [analyzed(jaeger_document())]]
    page = browser._table(traces, browser.BrowserSettings())
    assert '<form method="get" action="/compare">' in page
    assert f'<input type="checkbox" name="trace" value="{TRACE}"' in page


@pytest.mark.parametrize(
    ("find", "opened"),
    [
        (CHILD, [CHILD]),  # a span id, as a log line gives it
        ("PROCESS_ORDER", [CHILD]),  # its name, case ignored
        ("order failed", [ROOT]),  # a status message
        ("1.2.3", [ROOT, CHILD]),  # the resource's version
        ("ValueError", [CHILD]),  # an event's attribute
        ("nothing like it", []),
        ("", [CHILD]),  # no search: the first failure is open
    ],
)
def test_ui_find_opens_the_spans_that_match(find: str, opened: list[str]) -> None:
    trace, found = analyzed(jaeger_document())
    page = render_trace_page(trace, found, None, find=find)
    rows = page.split('<details class="span"')[1:]
    is_open = [row.startswith(" open>") for row in rows]
    drawn = [row.span_id for row in trace.waterfall]
    assert [span for span, yes in zip(drawn, is_open, strict=True) if yes] == opened
    if find:
        assert f"{len(opened)} span(s) match" in page


def test_ui_find_reaches_the_page_through_the_url(
    jaeger: FakeJaeger,  # noqa: F811 (the fixture imported above)
) -> None:
    jaeger.traces = [jaeger_document()]
    settings = browser.BrowserSettings(jaeger_url=jaeger.url)
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get(f"/trace/{TRACE}?uiFind={ROOT}").text
    assert "1 span(s) match" in page and page.count('<details class="span" open>') == 1
    assert f'value="{ROOT}"' in page, "the search stays in its field"


def test_the_service_map_reads_a_bounded_number_of_services(
    jaeger: FakeJaeger,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Anyone who can send spans can name services: the map searches at most MAP_SERVICES."""
    monkeypatch.setattr(browser, "MAP_SERVICES", 1)
    settings = browser.BrowserSettings(jaeger_url=jaeger.url)
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get("/dependencies")
    assert "Jaeger knows 2 services: the first 1 by name were read" in page.text
    searched = {query["service"] for query in jaeger.queries}
    assert searched == {"api-gateway"}


def row(depth: int, start: int, duration: int, operation: str = "op") -> WaterfallRow:
    return WaterfallRow("s", depth, "svc", operation, start, duration, False, False)


def test_self_time_is_what_no_child_covers() -> None:
    rows = [
        row(0, 0, 100),
        row(1, 10, 30),  # 10-40
        row(2, 15, 10),  # inside the one above: not the root's concern
        row(1, 30, 30),  # 30-60, overlapping its sibling: covered once
        row(1, 90, 30),  # 90-120, past the parent's end: clipped to 90-100
        row(0, 200, 5),  # a second top span
    ]
    assert self_times(rows) == [40, 20, 10, 30, 30, 5]


def test_the_trace_page_has_its_statistics_per_operation() -> None:
    trace, found = analyzed(jaeger_document())
    page = render_trace_page(trace, found, None)
    stats = page.split('<details class="stats">')[1].split("</details>")[0]
    # the root (20 ms) has one child (10 ms): self 10 ms each, the root listed first by name
    assert "<td>api-gateway</td><td>POST /api/orders</td>" in stats
    assert stats.count('<td class="num">10.0 ms</td>') >= 3
    assert "critical path</b>" in page, "a span on the critical path says its own share"


def test_odd_jaeger_json_still_gives_what_it_can() -> None:
    document = jaeger_document()
    document["spans"][0]["processID"] = ["not", "a", "key"]
    document["spans"][0]["warnings"] = "not a list"
    document["spans"][1]["logs"] = "not a list"
    found = details.from_jaeger(json.dumps(document).encode())
    assert one(found, ROOT).service == "" and one(found, ROOT).warnings == []
    assert one(found, CHILD).events == [] and one(found, CHILD).service == "order-service"


def test_a_very_long_log_line_is_cut_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text(log_line(TRACE, CHILD, "é" * 20_000) + "\n")
    text = span_logs.trace_logs(tmp_path, TRACE, 1 << 20).by_span[CHILD][0].text
    assert text.startswith("é" * 100), "non-ASCII kept as it is"
    assert text.endswith(f"... ({20_000 - span_logs.MAX_TEXT:,} more characters)")


def test_jaeger_v2_warnings_in_otlp_are_the_span_warnings() -> None:
    document = otlp_document()
    root = document["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    warned = {"arrayValue": {"values": [{"stringValue": "clock skew adjusted"}]}}
    root["attributes"].append({"key": "@jaeger@warnings", "value": warned})
    found = one(details.from_otlp(json.dumps(document).encode()), ROOT)
    assert found.warnings == ["clock skew adjusted"]
    assert "@jaeger@warnings" not in dict(found.attributes)


def test_the_header_warns_of_clock_skew_and_a_missing_parent() -> None:
    skewed = jaeger_document()
    skewed["spans"][1]["startTime"] = START_US - 50_000  # before its caller: another clock
    trace, found = analyzed(skewed)
    warnings = render_trace_page(trace, found, None).split('<ul class="warnings">')[1]
    assert "clock skew: order-service shifted to fit inside the calling span" in warnings
    orphaned = jaeger_document()
    orphaned["spans"][1]["references"][0]["spanID"] = "ffffffffffffffff"
    trace, found = analyzed(orphaned)
    warnings = render_trace_page(trace, found, None).split('<ul class="warnings">')[1]
    assert "1 span(s) whose parent is missing; trace incomplete" in warnings


def test_events_are_ticks_on_their_span_bar() -> None:
    """As Jaeger's UI marks a span's logs: the exception at +9 ms of the trace, in red, the
    other event at +3 ms, on the child's bar (the trace is 20 ms long)."""
    trace, found = analyzed(jaeger_document())
    page = render_trace_page(trace, found, None)
    child_row = page.split('<details class="span"')[2].split("</summary>")[0]
    assert '<i class="mark" style="left:15.000%"></i>' in child_row
    assert '<i class="mark exc" style="left:45.000%"></i>' in child_row
    assert "ticks: events (red: an exception)" in page
