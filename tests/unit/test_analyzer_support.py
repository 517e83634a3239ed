"""Helpers shared by the analyzer tests (no tests here): fixture paths, running the CLI and
reading its JSON report, writing small Jaeger traces."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trace_analysis.analyses.analyzer import Outcome, analyze_traces
from trace_analysis.cli import main
from trace_analysis.model.results import Criteria
from trace_analysis.sources.files import iter_file_traces

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "traces"
MALFORMED = FIXTURES / "malformed"
CASES = FIXTURES / "cases"  # real-world shapes, each with its stated answer
# the published schema of the JSON report
SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "trace_analysis" / "report.schema.json").read_text()
)


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> CliResult:
    """Run ``analyze_traces.py`` in process (exit status returned, output captured)."""
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def analyze_fixture(name: str, threshold_ms: float | None = 200, **options: Any) -> Outcome:
    threshold_us = None if threshold_ms is None else int(threshold_ms * 1000)
    criteria = Criteria(threshold_us, options.pop("errors_only", False))
    return analyze_traces(iter_file_traces(FIXTURES / name), criteria, **options)


def trace_ids(name: str) -> list[str]:
    """The trace ids a fixture holds, in file order."""
    data = json.loads((FIXTURES / name).read_text())
    return [trace["traceID"] for trace in data["data"]]


def report(
    capsys: pytest.CaptureFixture[str], path: Path, *args: str, threshold_ms: str = "1"
) -> dict[str, Any]:
    """The JSON report on ``path`` (by default every trace over 1 ms is slow)."""
    result = run_cli(capsys, threshold_ms, "--input", path, "--format", "json", *args)
    assert result.code == 0, result.err
    return result.json()


def only(data: dict[str, Any]) -> dict[str, Any]:
    (trace,) = data["traces"]
    return trace


def refused(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    result = run_cli(capsys, "1", "--input", path)
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1, result.err
    return result.err


def write(tmp_path: Path, name: str, value: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return path


def summary_line(trace: dict[str, Any]) -> tuple[Any, ...]:
    """Root, latency, whether failing, first failure and culprit of one reported trace."""
    origin = trace["error_origin"] or {}
    culprit = trace["culprit"] or {}
    return (
        f"{trace['root']['service']} {trace['root']['operation']}",
        trace["latency_ms"],
        trace["error"],
        f"{origin['service']} {origin['operation']}: {origin['message']}" if origin else None,
        origin.get("http_status"),
        f"{culprit['service']} {culprit['operation']}" if culprit else None,
        culprit.get("self_time_ms"),
        culprit.get("share"),
    )


def jaeger_span(
    span_id: str, parent: str | None, start_ms: float, duration_ms: float, **extra: Any
) -> dict[str, Any]:
    refs = (
        []
        if parent is None
        else [{"refType": extra.pop("ref", "CHILD_OF"), "traceID": "t1", "spanID": parent}]
    )
    return {
        "traceID": "t1",
        "spanID": span_id,
        "operationName": f"op-{span_id}",
        "references": refs,
        "startTime": 1_700_000_000_000_000 + int(start_ms * 1000),
        "duration": int(duration_ms * 1000),
        "tags": extra.pop("tags", []),
        "logs": [],
        "processID": extra.pop("process", "p1"),
    }


def tag(key: str, value: Any) -> dict[str, Any]:
    kind = {str: "string", bool: "bool", int: "int64"}[type(value)]
    return {"key": key, "type": kind, "value": value}


def jaeger_export(spans: list[dict[str, Any]], **services: str) -> dict[str, Any]:
    """A Jaeger JSON export of one trace (``t1``) of ``spans``; ``services`` names each
    process (``p1="web"``), p1 is ``web`` unless named."""
    processes = {pid: {"serviceName": name} for pid, name in ({"p1": "web"} | services).items()}
    return {"data": [{"traceID": "t1", "spans": spans, "processes": processes}]}
