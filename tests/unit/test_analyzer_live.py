"""Live mode against a stand-in Jaeger query API (http.server on 127.0.0.1): paging by time
slices, de-duplication, --limit, and every way the API can fail (each exit 2, one line)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.unit.test_analyzer_support import run_cli


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


@dataclass
class FakeJaeger:
    """Serves canned traces the way Jaeger does: those whose root starts in [start, end],
    newest first, at most ``limit``; or a canned failure."""

    traces: list[dict] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    failure: tuple[int, str, str] | None = None  # (status, content type, body)
    delay_s: float = 0.0
    url: str = ""

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


@pytest.fixture
def jaeger() -> Iterator[FakeJaeger]:
    fake = FakeJaeger()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            time.sleep(fake.delay_s)
            if fake.failure is not None:
                status, content_type, text = fake.failure
                body = text.encode()
            elif url.path == "/api/traces":
                fake.queries.append(params)
                status, content_type = 200, "application/json"
                body = json.dumps(fake.search(params)).encode()
            elif url.path == "/api/services":
                status, content_type = 200, "application/json"
                body = json.dumps({"data": ["api-gateway", "order-service"]}).encode()
            else:
                status, content_type, body = 404, "text/plain", b"404 page not found"
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


def test_pages_a_long_window_by_time_slices_and_reads_each_trace_once(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    spread(jaeger, 600)
    result = run_cli(
        capsys, "200", "--jaeger-url", jaeger.url, "--lookback", "15m", "--page-size", "50",
        "-f", "json",
    )  # fmt: skip
    assert result.code == 0, result.err
    report = result.json()
    summary = report["summary"]
    assert summary["traces"] == 600  # none lost to Jaeger's per-query cap, none twice
    assert summary["slow"] == 60 and summary["errors"] == 24
    assert len(report["traces"]) == 60 + 24 - 12  # 12 are both slow and failing
    assert report["warnings"] == [] and not report["truncated"]
    assert report["source"]["queries"] == len(jaeger.queries) > 600 // 50
    assert all(q["limit"] == "50" and q["service"] == "api-gateway" for q in jaeger.queries)
    # the slices tile the window from its end backwards, without overlap
    assert int(jaeger.queries[0]["end"]) - int(jaeger.queries[0]["start"]) > 14 * 60_000_000


def test_one_query_when_the_window_fits_in_a_page(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    spread(jaeger, 40)
    result = run_cli(
        capsys, "200", "--jaeger-url", jaeger.url, "-f", "json", "-o", "POST /api/orders"
    )
    assert result.code == 0, result.err
    assert result.json()["summary"]["traces"] == 40
    assert len(jaeger.queries) == 1
    assert jaeger.queries[0]["operation"] == "POST /api/orders"
    window = int(jaeger.queries[0]["end"]) - int(jaeger.queries[0]["start"])
    assert window == 3_600_000_000  # --lookback defaults to 1h


def test_limit_reads_only_what_it_needs(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    spread(jaeger, 600)
    result = run_cli(
        capsys, "200", "--jaeger-url", jaeger.url, "--page-size", "50", "--limit", "60",
        "--lookback", "15m", "-f", "json",
    )  # fmt: skip
    report = result.json()
    assert report["summary"]["traces"] == 60 and report["truncated"]
    assert len(jaeger.queries) < 15
    newest = {f"{i + 1:032x}" for i in range(60)}
    assert {t["trace_id"] for t in report["traces"]} <= newest  # the most recent ones


def test_a_burst_denser_than_a_page_is_reported(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time_ns() // 1000 - 1_000_000
    jaeger.traces = [make_trace(i, now) for i in range(30)]  # 30 traces in the same µs
    result = run_cli(capsys, "200", "--jaeger-url", jaeger.url, "--page-size", "10", "-f", "json")
    report = result.json()
    assert report["summary"]["traces"] == 10
    assert any("more than 10 traces within 1 ms" in w for w in report["warnings"])


def test_unknown_service_gets_a_hint(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(
        capsys, "200", "--jaeger-url", jaeger.url, "--service", "api-gatewy", "-f", "json"
    )
    assert result.code == 0
    assert result.json()["warnings"] == [
        "Jaeger knows no service 'api-gatewy'; it knows: api-gateway, order-service"
    ]


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
    result = run_cli(capsys, "200", "--jaeger-url", jaeger.url)
    assert result.code == 2
    assert result.err.count("\n") == 1 and expected in result.err, result.err


def test_a_jaeger_that_does_not_answer_times_out(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    jaeger.delay_s = 0.6
    result = run_cli(capsys, "200", "--jaeger-url", jaeger.url, "--timeout", "0.2")
    assert result.code == 2
    assert f"Jaeger at {jaeger.url} did not answer within 0.2 s" in result.err
