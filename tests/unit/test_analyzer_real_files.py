"""Real-world files the analyzer got wrong, each kind fixed: the cases in
tests/fixtures/traces/cases/ with their stated answers, and variants of each kind (the status
in every format, late and early callees, ids that are not hex, spans sharing an id, traces
under a millisecond)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_analyzer_support import (
    CASES,
    jaeger_export,
    jaeger_span,
    only,
    report,
    run_cli,
    summary_line,
    tag,
    write,
)

Capsys = pytest.CaptureFixture[str]


def zipkin_span(**tags: str) -> dict[str, Any]:
    span = json.loads((CASES / "zipkin_otel_status.json").read_text())[0]
    span["tags"] = {"http.path": "/api"} | tags
    return span


def failure(capsys: Capsys, path: Path) -> tuple[bool, str | None]:
    """Whether the one trace of ``path`` fails, and the message of its first failure."""
    trace = only(report(capsys, path))
    origin = trace["error_origin"]
    return trace["error"], origin["message"] if origin else None


# -- 1. status as the OpenTelemetry->Zipkin and ->Jaeger mappings write it --------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Zipkin from the OpenTelemetry exporter: otel.status_code and otel.status_description;
        # its parent is not in the file
        ("zipkin_otel_status.json", ("unknown service get", 207.0, True, "Something failed", True)),
        # 3. OTLP status ERROR without a description, and no error tag: the reason says so
        (
            "otlp_status_error_no_message.json",
            ("unknown service foobar", 0.0, True, "status ERROR, no message recorded", False),
        ),
    ],
)
def test_a_failure_is_read_and_worded_from_what_the_span_carries(
    capsys: Capsys, name: str, expected: tuple[Any, ...]
) -> None:
    trace = only(report(capsys, CASES / name, threshold_ms="0"))
    line = summary_line(trace)
    assert (*line[:3], trace["error_origin"]["message"], trace["incomplete"]) == expected
    assert trace["span_count"] == 1


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        # the mapping as it stands: the description in the error tag, "" when there is none
        ({"otel.status_code": "ERROR", "error": "card declined"}, (True, "card declined")),
        ({"otel.status_code": "ERROR", "error": ""}, (True, "status ERROR, no message recorded")),
        ({"otel.status_code": "Error"}, (True, "status ERROR, no message recorded")),
        ({"error": "true"}, (True, "error tag set, no message recorded")),
        ({"error": "stock service down"}, (True, "stock service down")),
        ({"otel.status_code": "OK"}, (False, None)),
        ({"error": "false"}, (False, None)),
    ],
)
def test_zipkin_status_variants(
    capsys: Capsys, tmp_path: Path, tags: dict[str, str], expected: tuple[bool, str | None]
) -> None:
    assert failure(capsys, write(tmp_path, "z.json", [zipkin_span(**tags)])) == expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (
            [tag("otel.status_code", "ERROR"), tag("error", True)],
            "status ERROR, no message recorded",
        ),
        ([tag("otel.status_code", "error")], "status ERROR, no message recorded"),
        ([tag("otel.status_code", 2)], "status ERROR, no message recorded"),  # early Go exporter
        (
            [tag("otel.status_code", "ERROR"), tag("otel.status_description", "db down")],
            "db down",
        ),
        ([tag("error", True)], "error tag set, no message recorded"),
        ([tag("error", "payment refused")], "payment refused"),  # a span that came from Zipkin
        ([tag("span.kind", "server"), tag("http.response.status_code", 503)], "HTTP 503"),
    ],
)
def test_jaeger_status_variants(
    capsys: Capsys, tmp_path: Path, tags: list[dict[str, Any]], expected: str
) -> None:
    spans = [jaeger_span("a", None, 0, 10, tags=tags)]
    assert failure(capsys, write(tmp_path, "j.json", jaeger_export(spans))) == (True, expected)


def test_jaeger_ok_status_and_false_error_tag_do_not_fail(capsys: Capsys, tmp_path: Path) -> None:
    tags = [tag("otel.status_code", "OK"), tag("error", False)]
    spans = [jaeger_span("a", None, 0, 10, tags=tags)]
    assert failure(capsys, write(tmp_path, "j.json", jaeger_export(spans))) == (False, None)


# -- 2. a callee whose clock runs ahead starts after its caller ended -------------------------


def late_callee_answer(trace: dict[str, Any]) -> tuple[Any, ...]:
    path = {(s["service"], s["operation"]): s["self_time_ms"] for s in trace["critical_path"]}
    return (
        summary_line(trace)[:3],
        trace["span_count"],
        trace["clock_skew"],
        path[("auth-service", "http:/parent/auth-service/v1/authentications/")],
        trace["culprit"]["service"],
        trace["culprit"]["operation"],
    )


LATE_CALLEE = (
    ("mobile-gateway get", 38.793, False),
    3,
    [{"span_id": "52b1ab4956917c39", "service": "auth-service", "shift_ms": -14.206}],
    4.157,
    "mobile-gateway",
    "get",
)


def test_zipkin_late_callee_is_moved_into_its_caller(capsys: Capsys, tmp_path: Path) -> None:
    trace = only(report(capsys, CASES / "zipkin_late_callee.json"))
    assert late_callee_answer(trace) == LATE_CALLEE
    client = [s for s in trace["critical_path"] if s["span_id"] == "52b1ab4956917c39"]
    assert [s["self_time_ms"] for s in client if s["service"] == "mobile-gateway"] == [9.92]
    assert any("clock skew: auth-service" in note for note in trace["notes"])
    spans = json.loads((CASES / "zipkin_late_callee.json").read_text())
    reordered = only(report(capsys, write(tmp_path, "r.json", spans[::-1])))
    assert late_callee_answer(reordered) == LATE_CALLEE


def skewed(capsys: Capsys, tmp_path: Path, child_start_ms: float, **kinds: str) -> dict:
    """A 100 ms web call to a 20 ms worker whose clock says it started at ``child_start_ms``."""
    root = jaeger_span("root", None, 0, 100, tags=[tag("span.kind", kinds.get("root", "client"))])
    child_tags = [tag("span.kind", kinds.get("child", "server"))]
    child = jaeger_span("child", "root", child_start_ms, 20, tags=child_tags, process="p2")
    export = jaeger_export([root, child], p2="worker")
    return only(report(capsys, write(tmp_path, "skew.json", export)))


@pytest.mark.parametrize("start_ms", [-50, 150, 100])  # early; late; just as the caller ended
def test_a_callee_outside_its_caller_is_centred_in_it(
    capsys: Capsys, tmp_path: Path, start_ms: float
) -> None:
    trace = skewed(capsys, tmp_path, start_ms)
    assert trace["clock_skew"] == [
        {"span_id": "child", "service": "worker", "shift_ms": 40.0 - start_ms}
    ]
    assert [step["span_id"] for step in trace["critical_path"]] == ["root", "child"]


@pytest.mark.parametrize(
    "kinds",
    [{"root": "producer", "child": "consumer"}, {"root": "internal", "child": "consumer"}],
)
def test_a_message_consumed_after_it_was_sent_is_not_skew(
    capsys: Capsys, tmp_path: Path, kinds: dict[str, str]
) -> None:
    assert skewed(capsys, tmp_path, 150, **kinds)["clock_skew"] == []


def test_a_callee_that_only_ends_after_its_caller_is_left_alone(
    capsys: Capsys, tmp_path: Path
) -> None:
    assert skewed(capsys, tmp_path, 90)["clock_skew"] == []


# -- 3. a reason names only the evidence seen --------------------------------------------------


def test_otlp_legacy_error_attribute_is_named_as_such(capsys: Capsys, tmp_path: Path) -> None:
    data = json.loads((CASES / "otlp_status_error_no_message.json").read_text())
    span = data["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    del span["status"]
    span["attributes"] = [{"key": "error", "value": {"boolValue": True}}]
    assert failure(capsys, write(tmp_path, "o.json", data)) == (
        True,
        "error tag set, no message recorded",
    )


# -- 4. --trace takes the ids the file uses ----------------------------------------------------


def test_non_hex_trace_id_is_listed_and_explained_alike(capsys: Capsys) -> None:
    path = CASES / "non_hex_trace_id.json"
    listed = only(report(capsys, path, threshold_ms="0"))
    assert (listed["trace_id"], summary_line(listed)[:2], listed["span_count"]) == (
        "trace-abc",
        ("service-one op-A", 0.03),
        1,
    )
    result = run_cli(capsys, "0", "--trace", "trace-abc", "--input", path, "--format", "json")
    assert result.code == 0, result.err
    explained = only(result.json())
    assert (explained["trace_id"], summary_line(explained)[:2]) == (
        "trace-abc",
        ("service-one op-A", 0.03),
    )


def test_hex_ids_are_matched_whatever_their_case_and_leading_zeros(capsys: Capsys) -> None:
    path = CASES / "microsecond_trace.json"
    for asked in ("C1", "00c1", "000000000000000000000000000000c1"):
        result = run_cli(capsys, "--trace", asked, "--input", path, "--format", "json")
        assert result.code == 0, (asked, result.err)


# -- 5. only a client/server or producer/consumer pair shares an id as one call ---------------


def test_two_clients_sharing_an_id_are_not_nested(capsys: Capsys, tmp_path: Path) -> None:
    path = CASES / "two_clients_one_span_id.json"
    trace = only(report(capsys, path, threshold_ms="0"))
    assert (summary_line(trace)[:2], trace["span_count"]) == (("service-one send", 0.04), 3)
    assert any(note.startswith("3 root spans") for note in trace["notes"])
    assert not any("client and server halves" in note for note in trace["notes"])
    data = json.loads(path.read_text())
    data["data"][0]["spans"].reverse()
    for source in (path, write(tmp_path, "reversed.json", data)):
        result = run_cli(
            capsys, "--trace", "006c3cf93508f205", "--input", source, "--format", "json"
        )
        depths = [row["depth"] for row in only(result.json())["waterfall"]]
        assert depths == [0, 0, 0]


@pytest.mark.parametrize(
    ("kinds", "nested"),
    [
        (("client", "server"), True),
        (("producer", "consumer"), True),
        (("server", "server"), False),
        (("consumer", "consumer"), False),
        (("client", "producer"), False),
    ],
)
def test_spans_sharing_an_id_pair_only_as_caller_and_callee(
    capsys: Capsys, tmp_path: Path, kinds: tuple[str, str], nested: bool
) -> None:
    root = jaeger_span("root", None, 0, 100, tags=[tag("span.kind", "server")])
    first = jaeger_span("x", "root", 10, 50, tags=[tag("span.kind", kinds[0])])
    second = jaeger_span("x", "root", 20, 30, tags=[tag("span.kind", kinds[1])], process="p2")
    second["operationName"] = "other"
    path = write(tmp_path, "pair.json", jaeger_export([root, second, first], p2="api"))
    result = run_cli(capsys, "--trace", "t1", "--input", path, "--format", "json")
    trace = only(result.json())
    assert [row["depth"] for row in trace["waterfall"]] == ([0, 1, 2] if nested else [0, 1, 1])
    halves = any("client and server halves" in note for note in trace["notes"])
    assert halves is nested


# -- 6. a trace under a millisecond is readable in the terminal --------------------------------


def test_microsecond_trace_json(capsys: Capsys) -> None:
    trace = only(report(capsys, CASES / "microsecond_trace.json", threshold_ms="0"))
    assert (trace["culprit"]["service"], trace["culprit"]["operation"]) == (
        "customers-service",
        "operation C",
    )
    assert trace["culprit"]["self_time_ms"] == 0.07
    path = [(step["operation"][-1], step["self_time_ms"]) for step in trace["critical_path"]]
    assert sorted(path) == [("C", 0.07), ("D", 0.02), ("E", 0.01)]


@pytest.mark.parametrize(
    "args",
    [
        ["0"],  # the listing: flagged traces, services, operations
        ["--trace", "c1"],  # the waterfall
        ["--trace", "c1", "--format", "markdown"],
        ["0", "--format", "markdown"],  # the CI summary
        ["0", "--format", "html"],  # the page, and the trace browser's lists
        ["--trace", "c1", "--format", "html"],  # the trace browser's trace page
    ],
)
def test_microsecond_trace_views_speak_us(capsys: Capsys, args: list[str]) -> None:
    result = run_cli(capsys, *args, "--input", CASES / "microsecond_trace.json")
    assert result.code == 0, result.err
    assert "0.0 ms" not in result.out and " ms" not in result.out.replace("0 ms or", "")
    assert "100 µs" in result.out and "70 µs" in result.out


@pytest.mark.parametrize("output", ["table", "markdown", "html"])
def test_a_view_over_a_millisecond_keeps_ms(capsys: Capsys, output: str) -> None:
    result = run_cli(
        capsys, "--trace", "e001", "--input", CASES / "otlp_v3_get_trace.json", "-f", output
    )
    assert result.code == 0, result.err
    assert "250.0 ms" in result.out and "230.0 ms" in result.out
    assert not re.search(r"(?<![\d,.])0\.0 ms", result.out)  # the root's start: "+0 µs"
