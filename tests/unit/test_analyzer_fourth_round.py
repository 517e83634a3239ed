"""The fourth round of public trace files (``tests/fixtures/traces/cases/README.md``): OTLP JSON
with protobuf field names, spans without a trace id, sub-millisecond figures beside large ones;
a run that judged nothing is no pass under ``--fail-on``; refusals that name the shape they
recognise. Each kind with its file's stated answer and variants."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_analyzer_support import CASES, FIXTURES, only, report, run_cli, write
from trace_analysis.formats.otlp import PROTO_FIELD_NAMES, json_field_names
from trace_analysis.reports.wording import duration

Capsys = pytest.CaptureFixture[str]
PROTOBUF = CASES / "protobuf_field_names.json"
EMPTY_IDS = CASES / "empty_trace_ids.jsonl"
MICRO_ROOT = CASES / "microsecond_root.json"
ZERO_MS = re.compile(r"(?<![\d,.])0\.0 ms")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m[1].lower(), name)


def otlp_document(
    trace_id: str = "5b8efff798038103d269b633813fc60c", *, status_code: Any = 0
) -> dict[str, Any]:
    """A two-span OTLP JSON document in the JSON field names: a 250 ms root with a 200 ms
    child, attributes and an event of every value kind."""
    start = 1_700_000_000_000_000_000
    ms = 1_000_000
    attrs = [
        {"key": "http.response.status_code", "value": {"intValue": "503"}},
        {"key": "flag", "value": {"boolValue": True}},
        {"key": "ratio", "value": {"doubleValue": 0.5}},
        {"key": "trace_id", "value": {"stringValue": "scope_spans"}},  # names as values stay
    ]
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]
                },
                "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                "scopeSpans": [
                    {
                        "scope": {"name": "t"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "eee19b7ec3c1b174",
                                "name": "GET /cart",
                                "kind": 2,
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(start + 250 * ms),
                                "attributes": attrs,
                                "status": {"code": status_code, "message": "cart down"},
                                "droppedAttributesCount": 0,
                            },
                            {
                                "traceId": trace_id,
                                "spanId": "eee19b7ec3c1b173",
                                "parentSpanId": "eee19b7ec3c1b174",
                                "name": "SELECT carts",
                                "kind": 3,
                                "startTimeUnixNano": str(start + 10 * ms),
                                "endTimeUnixNano": str(start + 210 * ms),
                                "events": [
                                    {
                                        "timeUnixNano": str(start + 20 * ms),
                                        "name": "exception",
                                        "attributes": [
                                            {
                                                "key": "exception.message",
                                                "value": {"stringValue": "timeout"},
                                            }
                                        ],
                                    }
                                ],
                                "status": {"code": status_code},
                            },
                        ],
                    }
                ],
            }
        ]
    }


def rename_keys(value: Any, rename: Any) -> Any:
    if isinstance(value, dict):
        return {rename(k): rename_keys(v, rename) for k, v in value.items()}
    if isinstance(value, list):
        return [rename_keys(item, rename) for item in value]
    return value


# --- protobuf field names ------------------------------------------------------------------


def test_protobuf_field_names_case_gives_its_answer(capsys: Capsys) -> None:
    data = report(capsys, PROTOBUF, threshold_ms="0.001")
    assert data["summary"]["traces"] == 1 and data["summary"]["spans"] == 2
    trace = only(data)
    assert trace["root"] == {"service": "loki-all", "operation": "store.validateQuery"}
    assert trace["latency_ms"] == 0.015
    table = run_cli(capsys, "0.001", "--input", PROTOBUF, "--fail-on", "any")
    assert table.code == 1 and "15 µs" in table.out


@pytest.mark.parametrize("spelling", ["json", "protobuf", "mixed"])
@pytest.mark.parametrize("container", ["document", "lines", "gzip", "bom", "v3-result"])
def test_both_spellings_read_the_same(
    capsys: Capsys, tmp_path: Path, spelling: str, container: str
) -> None:
    names = iter(range(10**6))

    def mixed(key: str) -> str:  # the span lists in protobuf spelling, every other key too
        return _snake(key) if key.endswith("Spans") or next(names) % 2 else key

    document = otlp_document(
        status_code={"json": 2, "protobuf": "STATUS_CODE_ERROR"}.get(spelling, 2)
    )
    if spelling == "protobuf":
        document = rename_keys(document, _snake)
    elif spelling == "mixed":
        document = rename_keys(document, mixed)
    if container == "v3-result":
        document = {"result": document}
    text = json.dumps(document, indent=None if container == "lines" else 2)
    path = tmp_path / "t.json"
    if container == "lines":
        path.write_text(text + "\n" + json.dumps(otlp_document("ab" * 16)) + "\n")
    elif container == "gzip":
        path.write_bytes(gzip.compress(text.encode()))
    elif container == "bom":
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    else:
        path.write_text(text)
    data = report(capsys, path)
    trace = next(t for t in data["traces"] if t["trace_id"].startswith("5b8e"))
    assert trace["span_count"] == 2 and trace["latency_ms"] == 250.0
    assert trace["root"] == {"service": "shop", "operation": "GET /cart"}
    assert trace["error"] and trace["error_origin"]["message"] == "timeout"
    assert trace["culprit"]["operation"] == "SELECT carts"


def test_only_keys_are_rewritten() -> None:
    document = json.dumps(
        {"scope_spans": ["trace_id", {"k": "span_id"}], "x": 'a "trace_id": b', "int_value": 1}
    ).encode()
    out = json.loads(json_field_names(document))
    assert out == {
        "scopeSpans": ["trace_id", {"k": "span_id"}],
        "x": 'a "trace_id": b',
        "intValue": 1,
    }
    plain = b'{"resourceSpans": []}'
    assert json_field_names(plain) is plain, "a document in JSON names is not copied"


def test_every_protobuf_name_maps_to_its_json_name() -> None:
    for name in PROTO_FIELD_NAMES:
        head, *rest = name.split("_")
        expected = head + "".join(word.capitalize() for word in rest)
        out = json.loads(json_field_names(json.dumps({"scope_spans": [], name: 1}).encode()))
        assert out == {"scopeSpans": [], expected: 1}, name


# --- empty and all-zero trace ids -----------------------------------------------------------


def test_empty_trace_ids_case_gives_its_answer(capsys: Capsys) -> None:
    data = report(capsys, EMPTY_IDS)
    assert data["traces"] == [] and data["summary"]["traces"] == 0
    (warning,) = [w for w in data["warnings"] if "trace id" in w]
    assert warning.startswith("3 span(s) with an empty or all-zero trace id skipped")
    gate = run_cli(capsys, "1", "--input", EMPTY_IDS, "--fail-on", "any")
    assert gate.code == 2 and "NOTHING JUDGED" in gate.out
    assert "nothing was judged" in gate.err


@pytest.mark.parametrize(
    ("bad_id", "shape"),
    [
        *(
            (bad, shape)
            for bad in ("", "0" * 32, "0" * 16, "  ")
            for shape in ("otlp", "jaeger", "zipkin")
        ),
        ("AAAAAAAAAAAAAAAAAAAAAA==", "otlp"),  # base64 of 16 zero bytes
    ],
)
def test_spans_without_a_trace_id_are_skipped_beside_good_traces(
    capsys: Capsys, tmp_path: Path, bad_id: str, shape: str
) -> None:
    good = "ab" * 16
    if shape == "otlp":
        bad_doc, good_doc = otlp_document(bad_id), otlp_document(good)
        document: Any = {"resourceSpans": bad_doc["resourceSpans"] + good_doc["resourceSpans"]}
    elif shape == "jaeger":

        def trace(trace_id: str) -> dict[str, Any]:
            return {
                "traceID": trace_id,
                "spans": [
                    {
                        "traceID": trace_id,
                        "spanID": "1" * 16,
                        "operationName": "op",
                        "references": [],
                        "startTime": 1_700_000_000_000_000,
                        "duration": 5_000,
                        "tags": [],
                        "processID": "p1",
                    }
                ],
                "processes": {"p1": {"serviceName": "svc", "tags": []}},
            }

        document = {"data": [trace(bad_id), trace(good)]}
    else:
        document = [
            {
                "traceId": t,
                "id": "1" * 16,
                "name": "op",
                "timestamp": 1_700_000_000_000_000,
                "duration": 5_000,
                "localEndpoint": {"serviceName": "svc"},
            }
            for t in (bad_id, good)
        ]
    data = report(capsys, write(tmp_path, "t.json", document))
    assert [t["trace_id"] for t in data["traces"]] == [good]
    assert any("empty or all-zero trace id skipped" in w for w in data["warnings"])


def test_an_all_zero_trace_id_is_not_asked_for(capsys: Capsys) -> None:
    result = run_cli(capsys, "--trace", "0" * 32, "--input", EMPTY_IDS)
    assert result.code == 2 and "all-zero" in result.err


# --- every figure in the unit that keeps its digits ----------------------------------------


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (0, "0 µs"),
        (0.5, "0.5 µs"),
        (5, "5 µs"),
        (5.5, "5.5 µs"),
        (15, "15 µs"),
        (999, "999 µs"),
        (999.6, "1.0 ms"),
        (1_500, "1.5 ms"),
        (250_000, "250.0 ms"),
        (1_204_000, "1,204 ms"),
        (420_000_000, "420.0 s"),
    ],
)
def test_duration_keeps_the_digits(us: float, text: str) -> None:
    assert duration(us) == text


@pytest.mark.parametrize(
    "args",
    [
        ["0.001"],
        ["0.001", "-f", "markdown"],
        ["0.001", "-f", "html"],
        ["--trace", "5"],
        ["--trace", "5", "-f", "markdown"],
    ],
)
def test_microsecond_root_case_reads_5_us_beside_420_s(capsys: Capsys, args: list[str]) -> None:
    result = run_cli(capsys, *args, "--input", MICRO_ROOT)
    assert result.code == 0, result.err
    assert "5 µs" in result.out and not ZERO_MS.search(result.out)
    if args != ["0.001", "-f", "markdown"]:  # the Markdown list shows no end-to-end time
        assert "420.0 s" in result.out


def test_sub_millisecond_operations_beside_slow_ones_in_the_summary_tables(
    capsys: Capsys, tmp_path: Path
) -> None:
    """A 40 µs cache span in a 2 s trace: its row of the operations table keeps its digits."""
    document = otlp_document()
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    start = int(spans[0]["startTimeUnixNano"])
    spans[0]["endTimeUnixNano"] = str(start + 2_000_000_000)
    spans.append(
        {
            **spans[1],
            "spanId": "eee19b7ec3c1b172",
            "name": "GET cache",
            "startTimeUnixNano": str(start + 1_000),
            "endTimeUnixNano": str(start + 41_000),
            "status": {},
            "events": [],
        }
    )
    path = write(tmp_path, "t.json", document)
    for fmt in ("table", "markdown"):
        result = run_cli(capsys, "1", "--input", path, "-f", fmt)
        cache = next(line for line in result.out.splitlines() if "GET cache" in line)
        assert "40 µs" in cache and not ZERO_MS.search(cache)
        assert "2,000 ms" in result.out


# --- --fail-on and a run that judged nothing -------------------------------------------------


@pytest.mark.parametrize("fail_on", ["slow", "error", "any"])
@pytest.mark.parametrize(
    "case",
    ["empty-file-list", "jaeger-empty-data", "mistyped-service", "mistyped-operation"],
)
def test_fail_on_with_nothing_judged_exits_2_and_says_so(
    capsys: Capsys, tmp_path: Path, fail_on: str, case: str
) -> None:
    args: list[object]
    if case == "empty-file-list":
        args = ["--input", write(tmp_path, "t.json", [])]
    elif case == "jaeger-empty-data":
        args = ["--input", FIXTURES / "empty.json"]
    elif case == "mistyped-service":
        args = ["--input", FIXTURES / "mixed.json", "--service", "api-gatewya"]
    else:
        args = ["--input", FIXTURES / "mixed.json", "--operation", "no such op"]
    result = run_cli(capsys, "200", *args, "--fail-on", fail_on)
    assert result.code == 2
    assert result.out.splitlines()[1].startswith("NOTHING JUDGED")  # the headline
    assert f"--fail-on {fail_on}: nothing was judged" in result.err
    assert result.err.count("\n") == 1
    without = run_cli(capsys, "200", *args)
    assert without.code == 0, "without --fail-on an empty run is a report, not an error"


def test_markdown_html_and_json_say_nothing_was_judged(capsys: Capsys) -> None:
    markdown = run_cli(capsys, "200", "--input", FIXTURES / "empty.json", "-f", "markdown")
    assert "**NOTHING JUDGED: no trace to judge" in markdown.out
    html = run_cli(capsys, "200", "--input", FIXTURES / "empty.json", "-f", "html")
    assert "<p><b>NOTHING JUDGED: no trace to judge" in html.out
    gate = run_cli(capsys, "200", "-i", FIXTURES / "empty.json", "-f", "json", "--fail-on", "any")
    assert gate.code == 2 and json.loads(gate.out)["summary"]["traces"] == 0


# --- refusals that name what they recognise --------------------------------------------------


THRIFT_SPAN = {
    "traceIdLow": 5,
    "traceIdHigh": 0,
    "spanId": 7,
    "parentSpanId": 0,
    "operationName": "HTTP GET",
    "flags": 1,
    "startTime": 1,
    "duration": 2,
}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {
                "traces": [{"traceID": "2f3e", "rootServiceName": "shop", "durationMs": 5}],
                "metrics": {"inspectedBytes": "1", "completedJobs": 1},
            },
            "a Tempo search answer (trace summaries, no spans)",
        ),
        ({"traces": [], "metrics": {}}, "a Tempo search answer"),
        (
            {"process": {"serviceName": "frontend", "tags": []}, "spans": [THRIFT_SPAN]},
            "Jaeger's Thrift Batch as JSON",
        ),
        (
            [{"process": {"serviceName": "frontend"}, "spans": [THRIFT_SPAN]}],
            "Jaeger's Thrift Batch as JSON",
        ),
    ],
)
def test_refusals_name_the_shape(
    capsys: Capsys, tmp_path: Path, document: Any, expected: str
) -> None:
    result = run_cli(capsys, "1", "--input", write(tmp_path, "t.json", document))
    assert result.code == 2 and result.out == ""
    assert expected in result.err and result.err.count("\n") == 1


def test_jaeger_ui_data_object_is_read_as_one_trace(capsys: Capsys, tmp_path: Path) -> None:
    """jaeger-ui's ``{"data": {trace}}`` state: the trace, not a refusal."""
    (trace,) = json.loads((FIXTURES / "slow_only.json").read_text())["data"]
    data = report(capsys, write(tmp_path, "t.json", {"data": trace}))
    expected = report(capsys, FIXTURES / "slow_only.json")
    assert data["traces"] == expected["traces"]
    broken = run_cli(capsys, "1", "--input", write(tmp_path, "b.json", {"data": {"x": 1}}))
    assert broken.code == 2 and "'data' is not an array of traces" in broken.err


def test_protobuf_lines_with_a_trace_over_several_lines(capsys: Capsys, tmp_path: Path) -> None:
    """The collector's file-exporter shape in protobuf names: a trace's spans on two lines
    make one trace, not two copies of it."""
    document = rename_keys(otlp_document(status_code=2), _snake)
    (block,) = document["resource_spans"]
    root, child = block["scope_spans"][0]["spans"]
    lines = []
    for span in (root, child):
        one = json.loads(json.dumps(block))
        one["scope_spans"][0]["spans"] = [span]
        lines.append(json.dumps({"resource_spans": [one]}))
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    data = report(capsys, path)
    trace = only(data)
    assert trace["span_count"] == 2 and trace["culprit"]["operation"] == "SELECT carts"
    assert not any("more than once" in w for w in data["warnings"])
