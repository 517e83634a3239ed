"""Live mode against a stand-in Jaeger query API (http.server on 127.0.0.1): paging by time
slices, de-duplication, --limit, and every way the API can fail (each exit 2, one line).

The stand-in speaks the v3 API (OTLP JSON) and the v1 routes, or only v1 (a Jaeger 1.x): every
test runs against both, and the analyzer must pick v3 where it is there and v1 where not."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jsonschema
import pytest

from stackctl.ports import Ports
from tests.unit.test_analyzer_support import SCHEMA, run_cli


def make_trace(index: int, start_us: int, slow: bool = False, error: bool = False) -> dict:
    trace_id = f"{index + 1:032x}"
    duration = 300_000 if slow else 4_000
    child_tags = [{"key": "span.kind", "type": "string", "value": "server"}]
    if error:
        child_tags.append({"key": "otel.status_code", "type": "string", "value": "ERROR"})
    return {
        "traceID": trace_id,
        "spans": [
            {
                "traceID": trace_id,
                "spanID": "a000000000000001",
                "operationName": "POST /api/orders",
                "references": [],
                "startTime": start_us,
                "duration": duration,
                "tags": [{"key": "span.kind", "type": "string", "value": "server"}],
                "processID": "p1",
            },
            {
                "traceID": trace_id,
                "spanID": "b000000000000001",
                "operationName": "POST /orders",
                "references": [
                    {"refType": "CHILD_OF", "traceID": trace_id, "spanID": "a000000000000001"}
                ],
                "startTime": start_us + 500,
                "duration": duration - 1_000,
                "tags": child_tags,
                "processID": "p2",
            },
        ],
        "processes": {
            "p1": {"serviceName": "api-gateway", "tags": []},
            "p2": {"serviceName": "order-service", "tags": []},
        },
    }


def forty_traces(jaeger: FakeJaeger) -> None:
    """40 traces over 10 minutes, newest first; only the oldest are slow (36, 37) or fail (37+)."""
    now = time.time_ns() // 1000
    jaeger.traces = [
        make_trace(i, now - 5_000_000 - i * 15_000_000, slow=i in (36, 37), error=i >= 37)
        for i in range(40)
    ]


@dataclass
class FakeJaeger:
    """Serves canned traces the way Jaeger does: those whose root starts in [start, end],
    newest first, at most ``limit``; or a canned failure."""

    traces: list[dict] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)  # searches, in v1 terms
    requests: list[str] = field(default_factory=list)  # every path asked for
    raw_queries: list[dict[str, str]] = field(default_factory=list)  # as sent
    failure: tuple[int, str, str] | None = None  # (status, content type, body)
    delay_s: float = 0.0
    url: str = ""
    v3: bool = True  # serves /api/v3 (Jaeger 2.x); False: a Jaeger 1.x without it

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, str, bytes]:
        if path == "/api/traces":
            self.queries.append(params)
            return 200, "application/json", json.dumps(self.search(params)).encode()
        if path.startswith("/api/traces/"):
            found = [t for t in self.traces if t["traceID"] == path.rsplit("/", 1)[1]]
            if not found:
                return (
                    404,
                    "application/json",
                    b'{"data":null,"errors":[{"code":404,"msg":"trace not found"}]}',
                )
            return 200, "application/json", json.dumps({"data": found}).encode()
        if path == "/api/services":
            return 200, "application/json", json.dumps({"data": SERVICES}).encode()
        if path == "/api/services/api-gateway/operations":
            return 200, "application/json", json.dumps({"data": OPERATIONS}).encode()
        if path == "/api/v3/operations" and params.get("service") == "api-gateway":
            listed = [{"name": name, "spanKind": "server"} for name in OPERATIONS]
            return 200, "application/json", json.dumps({"operations": listed}).encode()
        if not self.v3 or not path.startswith("/api/v3/"):
            return 404, "text/plain", b"404 page not found"
        if path == "/api/v3/services":
            return 200, "application/json", json.dumps({"services": SERVICES}).encode()
        if path == "/api/v3/traces":
            self.raw_queries.append(params)
            v1 = {
                "service": params["query.service_name"],
                "start": str(_us(params["query.start_time_min"])),
                "end": str(_us(params["query.start_time_max"])),
                "limit": params["query.num_traces"],
            }
            if "query.operation_name" in params:
                v1["operation"] = params["query.operation_name"]
            self.queries.append(v1)
            found = self.search(v1)["data"]
        else:
            found = [t for t in self.traces if t["traceID"] == path.rsplit("/", 1)[1]]
        if not found:
            return 404, "text/plain", NO_TRACES
        blocks = [block for trace in found for block in to_otlp(trace)]
        return 200, "application/json", json.dumps({"result": {"resourceSpans": blocks}}).encode()

    def search(self, params: dict[str, str]) -> dict[str, Any]:
        start, end, limit = int(params["start"]), int(params["end"]), int(params["limit"])
        found = [
            t
            for t in self.traces
            if start <= t["spans"][0]["startTime"] <= end
            and params["service"] == "api-gateway"
            and params.get("operation", "POST /api/orders") == "POST /api/orders"
        ]
        found.sort(key=lambda t: -t["spans"][0]["startTime"])
        return {"data": found[:limit], "total": 0, "limit": 0, "offset": 0, "errors": None}


SERVICES = ["api-gateway", "order-service"]
OPERATIONS = ["POST /api/orders", "POST /orders"]
NO_TRACES = b'{"error":{"httpCode":404,"message":"No traces found"}}\n'


def _us(rfc3339: str) -> int:
    """RFC 3339 with nanoseconds (as the v3 API takes it) to epoch µs."""
    assert rfc3339.endswith("000Z") and len(rfc3339) == 30, rfc3339
    moment = datetime.fromisoformat(rfc3339[:-4] + "+00:00")
    return round(moment.timestamp()) * 1_000_000 + moment.microsecond


def to_otlp(trace: dict) -> list[dict]:
    """A Jaeger v1 trace as the v3 API answers it: one resourceSpans block per process."""
    blocks = []
    for process_id, process in trace["processes"].items():
        spans = []
        for span in (s for s in trace["spans"] if s["processID"] == process_id):
            tags = {tag["key"]: tag["value"] for tag in span["tags"]}
            refs = span["references"]
            spans.append(
                {
                    "traceId": trace["traceID"],
                    "spanId": span["spanID"],
                    "parentSpanId": refs[0]["spanID"] if refs else "",
                    "name": span["operationName"],
                    "kind": 2 if tags.get("span.kind") == "server" else 1,
                    "startTimeUnixNano": str(span["startTime"] * 1000),
                    "endTimeUnixNano": str((span["startTime"] + span["duration"]) * 1000),
                    "status": {"code": 2} if tags.get("otel.status_code") == "ERROR" else {},
                }
            )
        attributes = [{"key": "service.name", "value": {"stringValue": process["serviceName"]}}]
        attributes += [  # the process's tags are its resource's other attributes
            {"key": tag["key"], "value": {"stringValue": str(tag["value"])}}
            for tag in process.get("tags", [])
        ]
        resource = {"attributes": attributes}
        blocks.append({"resource": resource, "scopeSpans": [{"scope": {}, "spans": spans}]})
    return blocks


@pytest.fixture(params=["v3", "v1 only"])
def jaeger(request: pytest.FixtureRequest) -> Iterator[FakeJaeger]:
    fake = FakeJaeger(v3=request.param == "v3")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            time.sleep(fake.delay_s)
            fake.requests.append(url.path)
            if fake.failure is not None:
                status, content_type, text = fake.failure
                body = text.encode()
            else:
                status, content_type, body = fake.answer(url.path, params)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that gave up (the timeout test) is expected, not news

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False  # a handler still sleeping must not hold up the next test
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def spread(jaeger: FakeJaeger, count: int, minutes: float = 10) -> None:
    """``count`` traces evenly over the last ``minutes``; every 10th slow, every 25th failing."""
    now = time.time_ns() // 1000
    step = int(minutes * 60_000_000 / count)
    jaeger.traces = [
        make_trace(i, now - 5_000_000 - i * step, slow=i % 10 == 0, error=i % 25 == 0)
        for i in range(count)
    ]


def live_report(jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    """``analyze_traces.py 200`` on the stand-in Jaeger, its JSON report (exit 0 checked)."""
    result = run_cli(capsys, "200", "--jaeger-url", jaeger.url, "-f", "json", *args)
    assert result.code == 0, result.err
    return result.json()


def test_pages_a_long_window_by_time_slices_and_reads_each_trace_once(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    spread(jaeger, 600)
    report = live_report(jaeger, capsys, "--lookback", "15m", "--page-size", "50")
    summary = report["summary"]
    assert summary["traces"] == 600  # none lost to Jaeger's per-query cap, none twice
    assert summary["slow"] == 60 and summary["errors"] == 24
    assert len(report["traces"]) == 60 + 24 - 12  # 12 are both slow and failing
    assert report["warnings"] == [] and not report["truncated"]
    assert report["source"]["queries"] == len(jaeger.requests)
    # v1 only: one v3 search answered "404 page not found", then v1 for the rest
    assert len(jaeger.queries) == len(jaeger.requests) - (0 if jaeger.v3 else 1) > 600 // 50
    assert report["source"]["api"] == ("v3" if jaeger.v3 else "v1")
    assert all(q["limit"] == "50" and q["service"] == "api-gateway" for q in jaeger.queries)
    # the slices tile the window from its end backwards, without overlap
    assert int(jaeger.queries[0]["end"]) - int(jaeger.queries[0]["start"]) > 14 * 60_000_000


def test_one_query_when_the_window_fits_in_a_page(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    spread(jaeger, 40)
    assert live_report(jaeger, capsys, "-o", "POST /api/orders")["summary"]["traces"] == 40
    assert len(jaeger.queries) == 1
    assert jaeger.queries[0]["operation"] == "POST /api/orders"
    window = int(jaeger.queries[0]["end"]) - int(jaeger.queries[0]["start"])
    assert window == 3_600_000_000  # --lookback defaults to 1h


def test_limit_reads_only_what_it_needs(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    spread(jaeger, 600)
    report = live_report(jaeger, capsys, "--page-size", "50", "--limit", "60", "--lookback", "15m")
    assert report["summary"]["traces"] == 60 and report["truncated"]
    assert len(jaeger.queries) < 15
    newest = {f"{i + 1:032x}" for i in range(60)}
    assert {t["trace_id"] for t in report["traces"]} <= newest  # the most recent ones


def test_a_burst_denser_than_a_page_is_reported(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time_ns() // 1000 - 1_000_000
    jaeger.traces = [make_trace(i, now) for i in range(30)]  # 30 traces in the same µs
    report = live_report(jaeger, capsys, "--page-size", "10")
    assert report["summary"]["traces"] == 10
    assert any("more than 10 traces within 1 ms" in w for w in report["warnings"])


def test_unknown_service_gets_a_hint(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    assert live_report(jaeger, capsys, "--service", "api-gatewy")["warnings"] == [
        "Jaeger knows no service 'api-gatewy'; it knows: api-gateway, order-service"
    ]


def test_unknown_operation_gets_a_hint(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o report.json` (meant as an output file) is an operation no span has: an empty window
    says so, instead of a quiet "0 traces"."""
    assert live_report(jaeger, capsys, "-o", "report.json")["warnings"] == [
        "Jaeger knows no operation 'report.json' of api-gateway; it knows: POST /api/orders, "
        "POST /orders"
    ]
    spread(jaeger, 5)
    assert live_report(jaeger, capsys, "--operation", "POST /api/orders")["warnings"] == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_jaeger_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = run_cli(capsys, "200", "--jaeger-url", url, "--fail-on", "any")
    assert result.code == 2 and result.out == ""
    assert result.err == (
        f"analyze_traces.py: error: cannot reach Jaeger at {url} (connection refused); "
        "is it running? (set --jaeger-url or JAEGER_URL)\n"
    )


def test_unreachable_jaeger_names_the_local_stacks_moved_jaeger(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`make up` with moved ports recorded them: the default Jaeger is not there, and the error
    says where that stack's Jaeger is; asked for that very Jaeger (now down), it adds nothing."""
    moved = _free_port()
    replace(Ports(), jaeger_query=moved).save(tmp_path / "run" / "ports.json")
    monkeypatch.setenv("RUN_DIR", str(tmp_path / "run"))
    elsewhere = f"http://127.0.0.1:{_free_port()}"
    result = run_cli(capsys, "200", "--jaeger-url", elsewhere)
    assert result.code == 2
    assert result.err.endswith(
        f"`make up` in this checkout started its Jaeger at http://127.0.0.1:{moved} "
        f"(--jaeger-url http://127.0.0.1:{moved})\n"
    )
    same = run_cli(capsys, "200", "--jaeger-url", f"http://localhost:{moved}")
    assert same.code == 2 and "make up" not in same.err


def test_jaeger_url_comes_from_the_environment(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spread(jaeger, 5)
    monkeypatch.setenv("JAEGER_URL", jaeger.url)
    result = run_cli(capsys, "200", "-f", "json")
    assert result.code == 0 and result.json()["source"]["jaeger_url"] == jaeger.url


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (
            (
                500,
                "application/json",
                '{"data":null,"errors":[{"code":500,"msg":"badger: closed"}]}',
            ),
            "answered HTTP 500 to /api/traces: badger: closed",
        ),
        ((502, "text/plain", "Bad Gateway"), "answered HTTP 502 to /api/traces: Bad Gateway"),
        (
            (200, "text/html", "<html>UI</html>"),
            "answered with an HTML page, not Jaeger's JSON API",
        ),
        ((200, "application/json", "{oops"), "not valid JSON"),
        ((200, "application/json", '{"data": "x"}'), "unexpected shape"),
        (
            (200, "application/json", '{"data":[],"errors":[{"code":400,"msg":"bad service"}]}'),
            "Jaeger reported an error: bad service (code 400)",
        ),
    ],
)
def test_bad_answers_exit_2_with_one_line(
    jaeger: FakeJaeger,
    capsys: pytest.CaptureFixture[str],
    failure: tuple[int, str, str],
    expected: str,
) -> None:
    jaeger.failure = failure
    result = run_cli(capsys, "200", "--jaeger-url", jaeger.url, "--api", "v1")
    assert result.code == 2
    assert result.err.count("\n") == 1 and expected in result.err, result.err


def test_a_jaeger_that_does_not_answer_times_out(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    jaeger.delay_s = 0.6
    result = run_cli(capsys, "200", "--jaeger-url", jaeger.url, "--timeout", "0.2")
    assert result.code == 2
    assert f"Jaeger at {jaeger.url} did not answer within 0.2 s" in result.err


# -- the v3 API: parameters, empty answers, errors, --api, --trace -----------------------------


def test_v3_search_sends_snake_case_parameters_in_rfc3339(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    spread(jaeger, 5)
    assert live_report(jaeger, capsys, "-o", "POST /api/orders")["summary"]["traces"] == 5
    if jaeger.v3:
        (sent,) = jaeger.raw_queries
        assert set(sent) == {
            "query.service_name", "query.operation_name", "query.start_time_min",
            "query.start_time_max", "query.num_traces", "query.search_depth",
        }  # fmt: skip
        assert jaeger.requests == ["/api/v3/traces"]
    else:
        assert jaeger.requests == ["/api/v3/traces", "/api/traces"]


def test_no_traces_found_is_an_empty_window_that_says_so(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    report = live_report(jaeger, capsys)
    assert report["summary"]["traces"] == 0
    assert report["source"]["api"] == ("v3" if jaeger.v3 else "v1")
    table = run_cli(capsys, "200", "--jaeger-url", jaeger.url)
    assert table.code == 0 and "NOTHING JUDGED: no trace to judge" in table.out
    # a gate over an empty window must not pass
    gate = run_cli(capsys, "200", "--jaeger-url", jaeger.url, "--fail-on", "any")
    assert gate.code == 2 and "NOTHING JUDGED" in gate.out
    assert "--fail-on any: nothing was judged" in gate.err and gate.err.count("\n") == 1


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            '{"error":{"httpCode":400,"message":"malformed parameter query.start_time_min"}}',
            "answered HTTP 400 to /api/v3/traces: malformed parameter query.start_time_min",
        ),
        (
            500,
            '{"error":{"httpCode":500,"message":"storage unavailable"}}',
            "answered HTTP 500 to /api/v3/traces: storage unavailable",
        ),
    ],
)
def test_v3_error_bodies_give_their_message(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str], status: int, body: str, expected: str
) -> None:
    jaeger.failure = (status, "text/plain; charset=utf-8", body)  # as Go's http.Error sends it
    result = run_cli(capsys, "200", "--jaeger-url", jaeger.url)
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and expected in result.err, result.err


def test_api_option_forces_one_api(jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]) -> None:
    spread(jaeger, 3)
    v1 = run_cli(capsys, "200", "--jaeger-url", jaeger.url, "--api", "v1", "-f", "json")
    assert v1.json()["source"]["api"] == "v1" and "/api/v3/traces" not in jaeger.requests
    jsonschema.validate(v1.json(), SCHEMA)
    v3 = run_cli(capsys, "200", "--jaeger-url", jaeger.url, "--api", "v3", "-f", "json")
    if jaeger.v3:
        assert v3.code == 0 and v3.json()["source"]["api"] == "v3"
        jsonschema.validate(v3.json(), SCHEMA)
        assert v3.json()["summary"]["traces"] == 3
    else:
        assert v3.code == 2
        assert "has no /api/v3 query API (HTTP 404 to /api/v3/traces)" in v3.err


def test_trace_option_fetches_by_id_and_explains(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    spread(jaeger, 30)
    wanted = [f"{26:032x}", f"{2:032x}"]  # failing; neither slow nor failing
    result = run_cli(
        capsys, "--trace", wanted[0], "--trace", wanted[1].lstrip("0"), "--jaeger-url",
        jaeger.url, "-f", "json",
    )  # fmt: skip
    assert result.code == 0, result.err
    report = result.json()
    assert [t["trace_id"] for t in report["traces"]] == wanted  # in the order asked for
    assert report["source"]["api"] == ("v3" if jaeger.v3 else "v1")
    failing, slow = report["traces"]
    assert failing["error_origin"]["service"] == "order-service"
    assert not slow["error"] and not slow["slow"]  # no threshold given: nothing is "slow"
    assert [row["service"] for row in slow["waterfall"]] == ["api-gateway", "order-service"]
    assert [row["depth"] for row in slow["waterfall"]] == [0, 1]
    expected = [f"/api/v3/traces/{wanted[0]}", f"/api/v3/traces/{wanted[1]}"]
    if not jaeger.v3:
        expected = [expected[0], f"/api/traces/{wanted[0]}", f"/api/traces/{wanted[1]}"]
    assert jaeger.requests == expected


def test_an_unknown_trace_id_is_exit_2_in_one_line(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    spread(jaeger, 3)
    result = run_cli(capsys, "--trace", "abc123", "--jaeger-url", jaeger.url)
    assert result.code == 2 and result.out == ""
    api = "v3" if jaeger.v3 else "v1"
    assert result.err == (
        f"analyze_traces.py: error: trace abc123 not found in Jaeger at {jaeger.url} (API {api})\n"
    )
    bad = run_cli(capsys, "--trace", "not-an-id", "--jaeger-url", jaeger.url)
    assert bad.code == 2 and "is not a trace id" in bad.err
