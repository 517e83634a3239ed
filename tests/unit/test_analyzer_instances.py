"""The per-instance view: a service seen as several processes (``service.instance.id``), each
instance's spans, errors and p50/p95, and the one that stands out, in every report format and
in the trace browser. The traces are generated here, as Jaeger JSON and as OTLP JSON from one
description: a gateway (one instance) calling inventory-service on three instances in turn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema
import pytest
from fastapi.testclient import TestClient

from tests.unit.test_analyzer_live import FakeJaeger, jaeger  # noqa: F401 (the fixture jaeger)
from tests.unit.test_analyzer_support import SCHEMA, run_cli, write
from trace_analysis import browser
from trace_analysis.analyses.instances import InstanceCounter
from trace_analysis.formats.jaeger import Span
from trace_analysis.model.spans import build_spans
from trace_analysis.sources.files import iter_file_traces

START_US = 1_700_000_000_000_000
INVENTORY = ("inventory-a", "inventory-b", "inventory-c")
FORMATS = ("jaeger", "otlp")
BAD = "inventory-service instance inventory-b: 40% errors vs 0% on its 2 peers"


def describe(
    count: int = 60,
    instances: tuple[str, ...] = INVENTORY,
    failing: dict[str, int] | None = None,
    slow: str | None = None,
    ids: bool = True,
    start_us: int = START_US,
    gateway_of: dict[str, str] | None = None,
) -> list[list[dict[str, Any]]]:
    """``count`` traces, each a gateway request whose call to inventory-service goes to the
    next instance in turn. ``failing``: instance -> how many of each 5 of its calls fail;
    ``slow``: that instance takes 40 ms instead of 4; ``ids``: whether processes carry
    ``service.instance.id``; ``gateway_of``: inventory instance -> the gateway instance that
    calls it (default: gateway-1 for all). Durations vary a little (as real ones do: no ties)."""
    traces = []
    for i in range(count):
        instance = instances[i % len(instances)]
        turn = i // len(instances)
        fails = (failing or {}).get(instance, 0) > turn % 5
        inventory_us = (40_000 if instance == slow else 4_000) + (i * 37 % 11) * 100
        start = start_us + i * 1_000_000
        error = "out of stock" if fails else None
        gateway = (gateway_of or {}).get(instance, "gateway-1") if ids else ""
        inventory = instance if ids else ""
        rows = (  # service, instance, name, kind, start offset, duration, error
            ("api-gateway", gateway, "POST /api/orders", "server", 0, inventory_us + 6_000, None),
            ("api-gateway", gateway, "POST /inventory/reserve", "client", 1_000,
             inventory_us + 2_000, error),
            ("inventory-service", inventory, "POST /inventory/reserve", "server", 2_000,
             inventory_us, error),
        )  # fmt: skip
        traces.append(
            [
                _span(i, n + 1, n or None, *row[:4], start + row[4], row[5], row[6])
                for n, row in enumerate(rows)
            ]
        )
    return traces


def _span(
    trace: int,
    span: int,
    parent: int | None,
    service: str,
    instance: str,
    name: str,
    kind: str,
    start_us: int,
    duration_us: int,
    error: str | None,
) -> dict[str, Any]:
    return {
        "trace_id": f"{trace + 1:032x}",
        "span_id": f"{span:016x}",
        "parent_id": None if parent is None else f"{parent:016x}",
        "service": service,
        "instance": instance,
        "name": name,
        "kind": kind,
        "start_us": start_us,
        "duration_us": duration_us,
        "error": error,
    }


def as_jaeger(traces: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Jaeger's ``{"data": [...]}``: one process per (service, instance), the instance id a
    process tag, as Jaeger shows an OTLP resource attribute."""
    data = []
    for spans in traces:
        processes: dict[str, dict[str, Any]] = {}
        jaeger_spans = []
        for span in spans:
            key = f"p{len(processes) + 1}"
            for pid, process in processes.items():
                if process["_key"] == (span["service"], span["instance"]):
                    key = pid
            tags = [{"key": "service.instance.id", "type": "string", "value": span["instance"]}]
            processes.setdefault(
                key,
                {
                    "_key": (span["service"], span["instance"]),
                    "serviceName": span["service"],
                    "tags": tags if span["instance"] else [],
                },
            )
            span_tags = [{"key": "span.kind", "type": "string", "value": span["kind"]}]
            if span["error"]:
                span_tags += [
                    {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                    {"key": "otel.status_description", "type": "string", "value": span["error"]},
                ]
            parent = span["parent_id"]
            jaeger_spans.append(
                {
                    "traceID": span["trace_id"],
                    "spanID": span["span_id"],
                    "operationName": span["name"],
                    "references": []
                    if parent is None
                    else [{"refType": "CHILD_OF", "traceID": span["trace_id"], "spanID": parent}],
                    "startTime": span["start_us"],
                    "duration": span["duration_us"],
                    "tags": span_tags,
                    "logs": [],
                    "processID": key,
                }
            )
        for process in processes.values():
            del process["_key"]
        data.append(
            {"traceID": spans[0]["trace_id"], "spans": jaeger_spans, "processes": processes}
        )
    return {"data": data}


def as_otlp(traces: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """OTLP JSON: one resourceSpans block per process, the instance id a resource attribute."""
    blocks = []
    for spans in traces:
        by_process: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for span in spans:
            by_process.setdefault((span["service"], span["instance"]), []).append(
                {
                    "traceId": span["trace_id"],
                    "spanId": span["span_id"],
                    "parentSpanId": span["parent_id"] or "",
                    "name": span["name"],
                    "kind": 2 if span["kind"] == "server" else 3,
                    "startTimeUnixNano": str(span["start_us"] * 1000),
                    "endTimeUnixNano": str((span["start_us"] + span["duration_us"]) * 1000),
                    "status": {"code": 2, "message": span["error"]} if span["error"] else {},
                }
            )
        for (service, instance), otlp_spans in by_process.items():
            attributes = [{"key": "service.name", "value": {"stringValue": service}}]
            if instance:
                attributes.append(
                    {"key": "service.instance.id", "value": {"stringValue": instance}}
                )
            blocks.append(
                {
                    "resource": {"attributes": attributes},
                    "scopeSpans": [{"scope": {"name": "test"}, "spans": otlp_spans}],
                }
            )
    return {"resourceSpans": blocks}


def saved(tmp_path: Path, kind: str, traces: list[list[dict[str, Any]]]) -> Path:
    document = as_jaeger(traces) if kind == "jaeger" else as_otlp(traces)
    return write(tmp_path, f"{kind}.json", document)


def report(capsys: pytest.CaptureFixture[str], path: Path, fmt: str = "json") -> Any:
    """The report of ``path`` in ``fmt``: failing traces are flagged, none is slow (1 s)."""
    result = run_cli(capsys, "1s", "-i", path, "-f", fmt, "--top", "50")
    assert result.code == 0, result.err
    return result.json() if fmt == "json" else result.out


# --- the span keeps its instance ----------------------------------------------------------------


@pytest.mark.parametrize("kind", FORMATS)
def test_each_span_keeps_its_instance(tmp_path: Path, kind: str) -> None:
    path = saved(tmp_path, kind, describe(count=3))
    instances = []
    for trace in iter_file_traces(path):
        spans, _, _ = build_spans(trace)
        instances.append(sorted((s.service, s.instance) for s in spans))
    assert instances == [
        [("api-gateway", "gateway-1")] * 2 + [("inventory-service", name)] for name in INVENTORY
    ]


@pytest.mark.parametrize("kind", FORMATS)
def test_a_span_without_an_instance_id_has_none(tmp_path: Path, kind: str) -> None:
    path = saved(tmp_path, kind, describe(count=3, ids=False))
    for trace in iter_file_traces(path):
        spans, _, _ = build_spans(trace)
        assert {s.instance for s in spans} == {""}


@pytest.mark.parametrize(
    ("tags", "instance"),
    [
        ({"service.instance.id": "x"}, ""),  # an object, not a list: read as no tags
        ([{"key": "service.instance.id", "type": "int64", "value": 7}], "7"),
        ([{"key": "service.instance.id", "value": None}], ""),
        (None, ""),
        ([{"key": "host.name", "type": "string", "value": "h"}], ""),
    ],
)
def test_odd_process_tags_give_no_instance_and_no_error(
    tmp_path: Path, tags: Any, instance: str
) -> None:
    document = as_jaeger(describe(count=1))
    for process in document["data"][0]["processes"].values():
        process["tags"] = tags
    (trace,) = iter_file_traces(write(tmp_path, "odd.json", document))
    spans, _, _ = build_spans(trace)
    assert {s.instance for s in spans} == {instance}


# --- the failing instance, named in every format --------------------------------------------------


@pytest.mark.parametrize("kind", FORMATS)
def test_the_failing_instance_is_counted_and_named_in_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    """inventory-b fails 2 of every 5 calls (8 of its 20), its two peers none."""
    data = report(capsys, saved(tmp_path, kind, describe(failing={"inventory-b": 2})))
    jsonschema.validate(data, SCHEMA)
    summary = data["summary"]
    rows = {row["instance"]: row for row in summary["instances"]}
    assert sorted(rows) == list(INVENTORY)  # the gateway ran as one process: not listed
    assert {name: (r["spans"], r["errors"], r["stands_out"]) for name, r in rows.items()} == {
        "inventory-a": (20, 0, False),
        "inventory-b": (20, 8, True),
        "inventory-c": (20, 0, False),
    }
    assert rows["inventory-b"]["error_rate"] == 0.4
    assert 4.0 <= rows["inventory-a"]["p50_ms"] <= rows["inventory-a"]["p95_ms"] <= 5.0
    (finding,) = summary["instance_findings"]
    assert finding["text"] == BAD
    assert (finding["measure"], finding["value"], finding["peers_value"], finding["peers"]) == (
        "errors",
        0.4,
        0.0,
        2,
    )
    assert finding["p_value"] < 0.01 / 3
    assert len(data["traces"]) == 8
    for trace in data["traces"]:
        origin = trace["error_origin"]
        assert (origin["service"], origin["instance"], origin["instance_stands_out"]) == (
            "inventory-service",
            "inventory-b",
            True,
        )


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("fmt", ["table", "markdown", "html"])
def test_the_failing_instance_is_named_in_each_text_format(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kind: str,
    fmt: str,
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # the terminal table on one line a row
    out = report(capsys, saved(tmp_path, kind, describe(failing={"inventory-b": 2})), fmt)
    flat = " ".join(out.split())
    assert "Per instance (services seen with several)" in flat
    assert all(name in flat for name in INVENTORY)
    assert BAD in flat
    # a flagged trace's reason names the instance its failure ran on, since it stands out
    reason = (
        "POST /inventory/reserve: out of stock; on instance inventory-b, which stands out: "
        "40% errors vs 0% on its 2 peers"
    )
    assert flat.count(reason) == 8


@pytest.mark.parametrize("kind", FORMATS)
def test_a_slow_instance_is_named_by_its_p95(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    data = report(capsys, saved(tmp_path, kind, describe(slow="inventory-c")))
    (finding,) = data["summary"]["instance_findings"]
    assert (finding["instance"], finding["measure"], finding["peers"]) == ("inventory-c", "p95", 2)
    assert (finding["value"], finding["peers_value"]) == (41.0, 5.0)
    assert (
        finding["text"]
        == "inventory-service instance inventory-c: p95 41.0 ms vs 5.0 ms on its 2 peers"
    )
    assert data["traces"] == []  # nothing failed, nothing was over 1 s


@pytest.mark.parametrize("kind", FORMATS)
def test_instances_alike_are_listed_and_none_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    """Each instance fails 1 call in 5: the same rate, so no instance stands out, and a
    failing trace's reason says nothing of its instance."""
    failing = dict.fromkeys(INVENTORY, 1)
    path = saved(tmp_path, kind, describe(failing=failing))
    data = report(capsys, path)
    assert [row["errors"] for row in data["summary"]["instances"]] == [4, 4, 4]
    assert data["summary"]["instance_findings"] == []
    assert all(not t["error_origin"]["instance_stands_out"] for t in data["traces"])
    for fmt in ("table", "markdown", "html"):
        out = report(capsys, path, fmt)
        assert "Per instance" in out and "stands out" not in out


@pytest.mark.parametrize("kind", FORMATS)
def test_a_caller_is_not_blamed_for_its_callees_failures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    """Every call to inventory-b comes from gateway-2, whose client spans fail with it: the
    failure started on inventory-b, and only inventory-b is named."""
    traces = describe(failing={"inventory-b": 2}, gateway_of={"inventory-b": "gateway-2"})
    data = report(capsys, saved(tmp_path, kind, traces))
    rows = {(r["service"], r["instance"]): r for r in data["summary"]["instances"]}
    assert rows[("api-gateway", "gateway-2")]["spans"] == 40
    assert rows[("api-gateway", "gateway-2")]["errors"] == 0  # passed on, not started there
    assert rows[("inventory-service", "inventory-b")]["errors"] == 8
    assert [f["text"] for f in data["summary"]["instance_findings"]] == [BAD]


def test_a_lone_failure_on_a_small_instance_is_not_named() -> None:
    """One failed span of one is 100% errors, but one span is no evidence: Fisher's exact
    test weighs the sample, where a rate alone would name it."""
    counter = InstanceCounter()
    spans = [Span(span_id=f"{i:016x}", duration=1_000) for i in range(41)]
    for index, span in enumerate(spans):
        span.service = "inventory-service"
        span.instance = "inventory-a" if index < 20 else "inventory-b" if index < 40 else "lone"
    spans[40].error = True
    counter.add(spans, {})
    stats, findings = counter.finish()
    assert [(s.instance, s.latency.count, s.errors) for s in stats] == [
        ("inventory-a", 20, 0),
        ("inventory-b", 20, 0),
        ("lone", 1, 1),
    ]
    assert findings == []


# --- nothing new when there is nothing to compare --------------------------------------------


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize(
    "traces",
    [
        pytest.param(lambda: describe(failing={"inventory-b": 2}, ids=False), id="no ids"),
        pytest.param(
            lambda: describe(instances=("inventory-a",), failing={"inventory-a": 2}),
            id="one instance",
        ),
    ],
)
def test_nothing_new_is_shown_without_several_instances(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str, traces: Any
) -> None:
    path = saved(tmp_path, kind, traces())
    data = report(capsys, path)
    jsonschema.validate(data, SCHEMA)
    assert data["summary"]["instances"] == [] and data["summary"]["instance_findings"] == []
    assert data["traces"] and all(
        not t["error_origin"]["instance_stands_out"] for t in data["traces"]
    )
    for fmt in ("table", "markdown", "html"):
        out = report(capsys, path, fmt)
        assert "Per instance" not in out and "stands out" not in out


def test_jaeger_and_otlp_give_the_same_figures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    traces = describe(failing={"inventory-b": 3}, slow="inventory-a")
    jaeger_report = report(capsys, saved(tmp_path, "jaeger", traces))["summary"]
    otlp_report = report(capsys, saved(tmp_path, "otlp", traces))["summary"]
    for key in ("instances", "instance_findings"):
        assert jaeger_report[key] == otlp_report[key]
    assert {(f["instance"], f["measure"]) for f in otlp_report["instance_findings"]} == {
        ("inventory-a", "p95"),
        ("inventory-b", "errors"),
    }


# --- the trace browser ------------------------------------------------------------------------


def browser_traces(fake: FakeJaeger) -> None:
    """The failing-instance traces, in the last minute, served by the stand-in Jaeger."""
    start = time.time_ns() // 1000 - 60_000_000
    fake.traces = as_jaeger(describe(count=30, failing={"inventory-b": 5}, start_us=start))["data"]


def test_the_service_map_lists_the_instances_and_names_the_bad_one(
    jaeger: FakeJaeger,  # noqa: F811 (the fixture imported above)
) -> None:
    browser_traces(jaeger)
    settings = browser.BrowserSettings(jaeger_url=jaeger.url)
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get("/dependencies?lookback=1h").text
    assert "<h2>Per instance (services seen with several)</h2>" in page
    link = "/search?" + urlencode(
        {
            "service": "inventory-service",
            "tags": '{"service.instance.id": "inventory-b"}',
            "lookback": "1h",
        }
    )
    assert f'<td>inventory-service</td><td><a href="{escape(link)}">inventory-b</a></td>' in page
    flat = " ".join(page.split())
    assert (
        "stands out</b> inventory-service instance inventory-b: 100% errors vs 0% on its 2 peers"
    ) in flat
    assert "<td>gateway-1</td>" not in page  # one gateway process: nothing to compare


def test_a_search_by_instance_finds_that_instances_traces(
    jaeger: FakeJaeger,  # noqa: F811 (the fixture imported above)
) -> None:
    browser_traces(jaeger)
    settings = browser.BrowserSettings(jaeger_url=jaeger.url)
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get(
            "/search",
            params={"service": "api-gateway", "tags": "service.instance.id=inventory-b"},
        ).text
    found = {i for i in range(30) if f'href="/trace/{i + 1:032x}"' in page}
    assert found == set(range(1, 30, 3))  # every third call went to inventory-b


def test_a_spans_details_show_its_instance(
    jaeger: FakeJaeger,  # noqa: F811 (the fixture imported above)
) -> None:
    browser_traces(jaeger)
    settings = browser.BrowserSettings(jaeger_url=jaeger.url)
    with TestClient(browser.create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get(f"/trace/{2:032x}").text
    assert '<span>instance <span class="mono">inventory-b</span></span>' in page
    assert '<span>instance <span class="mono">gateway-1</span></span>' in page


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_a_hostile_instance_id_reaches_no_terminal_raw(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str
) -> None:
    """An instance id is whatever a process sent: its control characters are shown escaped."""
    hostile = "inv\x1b[2J\x1b]0;title\x07-b\x9b1A"
    traces = describe(instances=("inventory-a", hostile, "inventory-c"), failing={hostile: 2})
    text = run_cli(capsys, "1s", "-i", saved(tmp_path, "otlp", traces), "-f", fmt).out
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "x1b[2J" in text or "u001b[2J" in text  # shown, escaped


def test_scipy_is_imported_only_when_an_instance_may_stand_out(tmp_path: Path) -> None:
    """scipy.stats costs a second or more of start-up: instances alike (no errors, the same
    latency) run no test and do not load it; a failing one does."""
    probe = (
        "import sys; from trace_analysis.cli import main; code = main(sys.argv[1:]); "
        "print('scipy' in sys.modules, code)"
    )

    def loaded(path: Path) -> str:
        run = subprocess.run(
            [sys.executable, "-c", probe, "1s", "-i", path, "-f", "json", "--output", os.devnull],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.split()[-2]

    assert loaded(write(tmp_path, "alike.json", as_otlp(describe()))) == "False"
    assert loaded(write(tmp_path, "bad.json", as_otlp(describe(failing={"inventory-b": 2})))) == (
        "True"
    )
