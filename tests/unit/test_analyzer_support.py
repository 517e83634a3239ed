"""Helpers shared by the analyzer tests (no tests here): fixture paths and running the CLI."""

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
