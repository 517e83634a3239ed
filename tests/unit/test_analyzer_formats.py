"""Every trace shape a user holds, read right: the cases in tests/fixtures/traces/cases/ with
their stated answers, and variants of each kind (compressed, byte-order mark, JSON Lines, OTLP
spread over lines, Tempo, enum names, span orders, ...)."""

from __future__ import annotations

import copy
import gzip
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.bench_modules import bench_module
from tests.unit.test_analyzer_support import (
    CASES,
    jaeger_span,
    only,
    refused,
    report,
    run_cli,
    summary_line,
    tag,
    write,
)

# -- the cases, each with its stated answer -------------------------------------------------


SHARED_ANSWER = (
    "shop POST /order",
    80.0,
    True,
    "payments POST /pay: card processor timeout",
    503,
    "payments POST /pay",
    68.0,
    0.85,
)
# each case's stated answer: root, latency, failing, first failure, its HTTP status, culprit,
# its self time and share
CASE_ANSWERS = {
    "single_trace_object.json": (
        *("web GET /checkout", 120.0, True, "db SELECT cart: error tag set, no message recorded"),
        *(None, "db SELECT cart", 100.0, 0.8333),
    ),
    "otlp_v3_get_trace.json": (
        *("gateway POST /api/orders", 250.0, True),
        *("inventory POST /reserve: TimeoutError: stock db timed out", 503),
        *("inventory POST /reserve", 220.0, 0.88),
    ),
    # the child that outlives the root is clipped to it
    "float_microseconds.json": (
        *("reports GET /report", 4156.011, False, None, None),
        *("reports render", 4056.011, 0.9759),
    ),
    "shared_span_id.json": SHARED_ANSWER,
    "zero_start_time.json": (
        *("web GET /home", 100.0, False, None, None),
        *("worker SELECT items", 60.0, 0.6),
    ),
}


@pytest.mark.parametrize("name", sorted(CASE_ANSWERS))
def test_each_case_gives_its_stated_answer(capsys: pytest.CaptureFixture[str], name: str) -> None:
    trace = only(report(capsys, CASES / name))
    assert summary_line(trace) == CASE_ANSWERS[name]
    assert trace["slow"]  # threshold 1 ms


def test_shared_span_id_keeps_both_halves(capsys: pytest.CaptureFixture[str]) -> None:
    trace = only(report(capsys, CASES / "shared_span_id.json"))
    assert trace["span_count"] == 3
    assert any("client and server halves" in note for note in trace["notes"])


def test_shared_span_id_answer_does_not_depend_on_span_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = json.loads((CASES / "shared_span_id.json").read_text())
    spans = data["data"][0]["spans"]
    for number, order in enumerate(itertools.permutations(spans)):
        variant = copy.deepcopy(data)
        variant["data"][0]["spans"] = list(order)
        trace = only(report(capsys, write(tmp_path, f"order{number}.json", variant)))
        assert (trace["span_count"], summary_line(trace)) == (3, SHARED_ANSWER), order


def test_zero_start_time_is_not_clock_skew(capsys: pytest.CaptureFixture[str]) -> None:
    trace = only(report(capsys, CASES / "zero_start_time.json"))
    assert trace["end_to_end_ms"] == 100.0
    assert trace["clock_skew"] == []
    assert any("1 span(s) without a start time" in note for note in trace["notes"])


def test_missing_start_time_is_read_as_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = json.loads((CASES / "zero_start_time.json").read_text())
    del data["data"][0]["spans"][1]["startTime"]
    trace = only(report(capsys, write(tmp_path, "missing.json", data)))
    assert trace["culprit"]["self_time_ms"] == 60.0 and trace["end_to_end_ms"] == 100.0
    assert any("without a start time" in note for note in trace["notes"])


def test_zipkin_v2(capsys: pytest.CaptureFixture[str]) -> None:
    trace = only(report(capsys, CASES / "zipkin_v2.json"))
    assert summary_line(trace)[:3] == ("frontend get /api", 150.0, True)
    assert summary_line(trace)[5:] == ("frontend get", 120.0, 0.8)
    assert trace["error_origin"]["message"] == "500"  # the error tag's value is the message


def test_ndjson_traces(capsys: pytest.CaptureFixture[str]) -> None:
    data = report(capsys, CASES / "ndjson_traces.jsonl")
    found = {
        t["root"]["service"]: (t["root"]["operation"], t["latency_ms"], t["error"])
        for t in data["traces"]
    }
    assert found == {"svc-a": ("GET /a", 5.0, False), "svc-b": ("GET /b", 7.0, True)}
    assert data["summary"]["traces"] == 2


# -- variants: the same traces in other containers and dialects ------------------------------

CASE_FILES = sorted(p.name for p in CASES.iterdir() if p.suffix in (".json", ".jsonl"))


def traces_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(data["traces"], key=lambda t: t["trace_id"])


@pytest.mark.parametrize("name", CASE_FILES)
def test_gzip_and_byte_order_mark_give_the_same_answer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    plain = traces_of(report(capsys, CASES / name, threshold_ms="0"))  # every trace shown
    raw = (CASES / name).read_bytes()
    bom = b"\xef\xbb\xbf" + raw
    for variant, content in {
        "gz": gzip.compress(raw),
        "bom": bom,
        "bom.gz": gzip.compress(bom),
    }.items():
        path = tmp_path / f"export.{variant}"  # the name says nothing: the content does
        path.write_bytes(content)
        assert traces_of(report(capsys, path, threshold_ms="0")) == plain, variant


def test_stdin_is_read_compressed_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    raw = gzip.compress((CASES / "zipkin_v2.json").read_bytes())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    result = run_cli(capsys, "1", "--input", "-", "--format", "json")
    assert result.code == 0, result.err
    assert only(result.json())["root"]["operation"] == "get /api"


def otlp_case() -> dict[str, Any]:
    return json.loads((CASES / "otlp_v3_get_trace.json").read_text())


def otlp_answer(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[Any, ...]:
    return summary_line(only(report(capsys, path)))


def test_otlp_bare_tempo_and_enum_names_read_alike(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    expected = otlp_answer(capsys, CASES / "otlp_v3_get_trace.json")
    bare = otlp_case()["result"]
    assert otlp_answer(capsys, write(tmp_path, "bare.json", bare)) == expected
    tempo = {"batches": bare["resourceSpans"]}
    assert otlp_answer(capsys, write(tmp_path, "tempo.json", tempo)) == expected
    named = copy.deepcopy(bare)
    for block in named["resourceSpans"]:
        # older Tempo answers: instrumentationLibrarySpans, enum names, integers as numbers
        block["instrumentationLibrarySpans"] = block.pop("scopeSpans")
        for span in block["instrumentationLibrarySpans"][0]["spans"]:
            span["kind"] = {2: "SPAN_KIND_SERVER", 3: "SPAN_KIND_CLIENT"}[span["kind"]]
            span["status"]["code"] = "STATUS_CODE_ERROR"
            span["startTimeUnixNano"] = int(span["startTimeUnixNano"])
    assert otlp_answer(capsys, write(tmp_path, "named.json", named)) == expected
    listed = [bare, {"resourceSpans": []}]  # a list of ExportTraceServiceRequests
    assert otlp_answer(capsys, write(tmp_path, "listed.json", listed)) == expected


def test_otlp_base64_ids_are_read_as_hex(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import base64

    data = otlp_case()["result"]
    for block in data["resourceSpans"]:
        for span in block["scopeSpans"][0]["spans"]:
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in span:
                    span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    trace = only(report(capsys, write(tmp_path, "b64.json", data)))
    assert trace["trace_id"] == "0000000000000000000000000000e001"
    assert trace["culprit"]["operation"] == "POST /reserve"


def test_collector_file_exporter_lines_with_a_trace_over_several_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    expected = otlp_answer(capsys, CASES / "otlp_v3_get_trace.json")
    blocks = otlp_case()["result"]["resourceSpans"]
    other = copy.deepcopy(blocks[1])
    other["scopeSpans"][0]["spans"][0].update(
        traceId="0000000000000000000000000000f00d", parentSpanId="", status={}, attributes=[]
    )
    # the gateway's spans on line 1, an unrelated trace on line 2, inventory's span on line 3
    lines = [
        {"resourceSpans": [blocks[0]]},
        {"resourceSpans": [other]},
        {"resourceSpans": [blocks[1]]},
    ]
    path = tmp_path / "traces.json"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    data = report(capsys, path)
    assert data["summary"]["traces"] == 2
    (failing,) = [t for t in data["traces"] if t["error"]]
    assert summary_line(failing) == expected and failing["span_count"] == 3


def test_otlp_links_are_not_parents(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = otlp_case()["result"]
    span = data["resourceSpans"][1]["scopeSpans"][0]["spans"][0]
    span["links"] = [{"traceId": span["traceId"], "spanId": "00000000000000e1"}]
    del span["parentSpanId"]
    trace = only(report(capsys, write(tmp_path, "links.json", data)))
    assert any("2 root spans" in note for note in trace["notes"])


def test_jaeger_list_of_traces_envelope_lines_and_anonymized_spans(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    expected = summary_line(only(report(capsys, CASES / "single_trace_object.json")))
    trace = json.loads((CASES / "single_trace_object.json").read_text())
    assert otlp_answer(capsys, write(tmp_path, "list.json", [trace])) == expected
    lines = tmp_path / "envelopes.jsonl"  # one /api/traces/{id} answer per line
    lines.write_text(json.dumps({"data": [trace]}) + "\n\n" + json.dumps({"data": []}) + "\n")
    assert otlp_answer(capsys, lines) == expected
    # Jaeger's anonymizer: a bare list of spans, each with its trace id and its own process
    spans = copy.deepcopy(trace["spans"])
    for span in spans:
        span["process"] = trace["processes"][span.pop("processID")]
    assert otlp_answer(capsys, write(tmp_path, "anonymized.json", spans)) == expected


def test_zipkin_list_of_traces_and_shared_halves(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spans = json.loads((CASES / "zipkin_v2.json").read_text())
    expected = otlp_answer(capsys, CASES / "zipkin_v2.json")
    assert otlp_answer(capsys, write(tmp_path, "traces.json", [spans])) == expected
    # the server half of the client call, reported by the backend under the same id
    server = {
        "traceId": spans[1]["traceId"],
        "parentId": spans[0]["id"],
        "id": spans[1]["id"],
        "kind": "SERVER",
        "name": "get /stock",
        "timestamp": 1700000000015000,
        "duration": 100000,
        "localEndpoint": {"serviceName": "backend"},
        "shared": True,
        "tags": {"error": "stock service down"},
    }
    for order in ([*spans, server], [server, *spans]):
        trace = only(report(capsys, write(tmp_path, "shared.json", order)))
        assert trace["span_count"] == 3
        assert trace["error_origin"]["message"] == "stock service down"
        assert (trace["culprit"]["service"], trace["culprit"]["self_time_ms"]) == ("backend", 100.0)


def test_zipkin_shared_flag_marks_the_server_half_without_a_kind(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spans = json.loads((CASES / "zipkin_v2.json").read_text())
    del spans[1]["kind"]  # the client half, kind left out
    server = {  # its server half, kind left out too, on a clock running 10 ms behind
        "traceId": spans[1]["traceId"], "parentId": spans[0]["id"], "id": spans[1]["id"],
        "name": "get /stock", "timestamp": 1700000000005000, "duration": 100000,
        "localEndpoint": {"serviceName": "backend"}, "shared": True,
    }  # fmt: skip
    path = write(tmp_path, "shared.json", [server, *spans])
    result = run_cli(capsys, "--trace", "f001", "--input", path, "--format", "json")
    rows = only(result.json())["waterfall"]
    assert [(row["depth"], row["service"], row["operation"]) for row in rows] == [
        (0, "frontend", "get /api"),
        (1, "frontend", "get"),
        (2, "backend", "get /stock"),
    ]


# -- analysis rules ---------------------------------------------------------------------------


def test_the_same_trace_twice_keeps_the_fuller_copy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    full = json.loads((CASES / "single_trace_object.json").read_text())
    early = copy.deepcopy(full)
    early["spans"] = early["spans"][:1]  # exported before the failing child arrived
    early["processes"] = {"p9": full["processes"]["p1"]}  # its own process numbering
    early["spans"][0]["processID"] = "p9"
    data = report(capsys, write(tmp_path, "twice.json", {"data": [early, full]}))
    trace = only(data)
    assert (trace["span_count"], trace["error"]) == (2, True)
    assert data["warnings"] == ["1 trace(s) came in more than one entry; their spans were merged"]


def test_pre_scan_finds_an_error_in_a_file_mixing_compact_and_spaced_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = jaeger_span("a", None, 0, 10, tags=[tag("span.kind", "server")])
    child = jaeger_span("b", "a", 1, 5, tags=[tag("otel.status_code", "ERROR")])
    trace = {"traceID": "t1", "spans": [root, child], "processes": {"p1": {"serviceName": "s"}}}
    compact_root = json.dumps(root, separators=(",", ":"))
    spaced_child = json.dumps(child, indent=2)
    processes = json.dumps(trace["processes"])
    spans = f"[{compact_root}, {spaced_child}]"
    text = f'{{"data": [{{"traceID": "t1", "spans": {spans}, "processes": {processes}}}]}}'
    path = tmp_path / "mixed.json"
    path.write_text(text)
    result = run_cli(capsys, "--errors-only", "--input", path, "--format", "json")
    assert only(result.json())["error_origin"]["span_id"] == "b"


def test_async_children_do_not_block_their_parent_on_the_critical_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spans = [
        jaeger_span("root", None, 0, 100, tags=[tag("span.kind", "server")]),
        jaeger_span("send", "root", 10, 5, tags=[tag("span.kind", "producer")]),
        jaeger_span("consume", "send", 20, 70, tags=[tag("span.kind", "consumer")], process="p2"),
        jaeger_span("audit", "root", 30, 60, ref="FOLLOWS_FROM"),
    ]
    trace = {
        "traceID": "t1",
        "spans": spans,
        "processes": {"p1": {"serviceName": "web"}, "p2": {"serviceName": "worker"}},
    }
    found = only(report(capsys, write(tmp_path, "async.json", {"data": [trace]})))
    assert [step["span_id"] for step in found["critical_path"]] == ["root", "send"]
    assert found["culprit"] == {
        "service": "web",
        "operation": "op-root",
        "self_time_ms": 95.0,
        "share": 0.95,
    }


def test_a_span_without_process_is_unknown_service_with_a_note(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spans = [jaeger_span("root", None, 0, 10), jaeger_span("lost", "root", 1, 8, process="p7")]
    trace = {"traceID": "t1", "spans": spans, "processes": {"p1": {"serviceName": "web"}}}
    found = only(report(capsys, write(tmp_path, "noproc.json", {"data": [trace]})))
    assert found["culprit"]["service"] == "unknown service"
    assert any("1 span(s) without a process" in note for note in found["notes"])


# -- shapes that are not traces: one line that names them -------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"resourceMetrics": []}, "this looks like OTLP metrics, not traces"),
        ({"resourceLogs": []}, "this looks like OTLP logs, not traces"),
        ({"schema_version": 1, "summary": {}, "traces": []}, "an analyze_traces.py report"),
        ({"data": ["api-gateway", "order-service"]}, "Jaeger's list of services"),
        ([{"traceId": "a", "id": "b", "binaryAnnotations": []}], "Zipkin v1 JSON"),
        (
            {"error": {"code": 404, "message": "No traces found"}},
            "error answer, not traces: No traces found",
        ),
        ({"hello": 1}, "this looks like an object with keys hello, not traces"),
        ([1, 2], "this looks like a list of non-objects"),
    ],
)
def test_other_shapes_are_refused_naming_what_they_look_like(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: Any, expected: str
) -> None:
    assert expected in refused(capsys, write(tmp_path, "thing.json", content))


def test_a_generated_export_as_jaeger_json_and_as_otlp_lines_analyzes_alike(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The benchmark's two files: the same traces, so the same report, though the OTLP lines
    spread traces over batches and group spans by resource."""
    module = bench_module("generate_export")
    jaeger, otlp = tmp_path / "export.json", tmp_path / "export.jsonl"
    with jaeger.open("w") as out, otlp.open("w") as otlp_out:
        module.write_export(out, 4000, seed=11, indent=None, otlp_out=otlp_out)
    lines = [json.loads(line) for line in otlp.read_text().splitlines()]
    per_line = [
        {s["traceId"] for r in line["resourceSpans"] for sc in r["scopeSpans"] for s in sc["spans"]}
        for line in lines
    ]
    assert any(a & b for a, b in itertools.pairwise(per_line))  # traces spread over lines
    first, second = report(capsys, jaeger), report(capsys, otlp)  # every trace flagged
    assert first["summary"] == second["summary"] and first["summary"]["errors"] > 0
    assert first["traces"] == second["traces"] and second["warnings"] == []


@pytest.mark.parametrize(
    "attribute",
    [
        '{"key":"http.response.status_code","value":{"intValue":"503"}}',
        '{ "key" : "http.status_code" , "value" : { "intValue" : 502 } }',
        '{"value": {"intValue": "504"}, "key": "http.response.status_code"}',
    ],
)
def test_otlp_server_5xx_is_an_error_however_its_attribute_is_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, attribute: str
) -> None:
    span = (
        '{"traceId":"0000000000000000000000000000a5a5","spanId":"00000000000000a5","name":"GET /",'
        '"kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1700000000000000000",'
        f'"endTimeUnixNano":"1700000000005000000","attributes":[{attribute}]}}'
    )
    resource = '{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]}'
    path = tmp_path / "5xx.json"
    path.write_text(
        f'{{"resourceSpans":[{{"resource":{resource},"scopeSpans":[{{"spans":[{span}]}}]}}]}}'
    )
    result = run_cli(capsys, "--errors-only", "--input", path, "--format", "json")
    origin = only(result.json())["error_origin"]
    assert origin["message"].startswith("HTTP 50") and origin["http_status"] >= 500
