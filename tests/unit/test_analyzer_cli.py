"""The command line: exit codes, one-line errors for bad input and usage, --fail-on, --output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_analyzer_support import FIXTURES, MALFORMED, run_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("not_json.json", "this looks like an HTML or XML page, not JSON"),
        ("truncated.json", "not valid JSON"),
        ("wrong_shape.json", "unexpected shape: 'data' is not an array of traces"),
        ("not_a_trace.json", "trace #1: unexpected shape: Expected `object`, got `int`"),
        ("no_data.json", "Jaeger v3 (OTLP JSON) without 'resourceSpans'"),
        ("missing_fields.json", "missing required field `spanID` - at `spans[0]`"),
        ("no_trace_id.json", "trace #1: unexpected shape: Object missing required field `traceID`"),
        ("bad_types.json", "Expected `int`, got `str` - at `spans[0].startTime`"),
        ("jaeger_error.json", "Jaeger reported an error: storage unavailable (code 500)"),
        ("empty_file.json", "file is empty"),
    ],
)
def test_malformed_input_exits_2_with_one_clear_line(
    capsys: pytest.CaptureFixture[str], name: str, expected: str
) -> None:
    path = MALFORMED / name
    result = run_cli(capsys, "200", "--input", path)
    assert result.code == 2
    assert result.out == ""
    assert result.err.count("\n") == 1, result.err
    assert result.err.startswith(f"analyze_traces.py: error: {path}: ")
    assert expected in result.err


def test_missing_file_and_directory_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = run_cli(capsys, "200", "--input", tmp_path / "nope.json")
    assert missing.code == 2 and missing.err.strip().endswith("nope.json: no such file")
    directory = run_cli(capsys, "200", "--input", tmp_path)
    assert directory.code == 2 and "is a directory" in directory.err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "give a latency threshold in ms (e.g. `analyze_traces.py 200`), or --errors-only"),
        (["abc"], "invalid threshold 'abc': give ms (200)"),
        (["-5"], "No such option: -5"),
        (["--threshold-ms", "-5"], "threshold must be 0 ms or more"),
        (["200", "--threshold-ms", "300"], "two thresholds given"),
        (["200", "--format", "xml"], "'xml' is not one of"),
        (["200", "--fail-on", "never"], "Invalid value for '--fail-on'"),
        (["200", "--lookback", "3 days"], "invalid --lookback '3 days': use e.g. 15m, 1h, 2d"),
        (["200", "--jaeger-url", "localhost:16686"], "invalid --jaeger-url"),
        (["200", "--limit", "0"], "Invalid value for '--limit'"),
        (["200", "--no-such-flag"], "No such option: --no-such-flag"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    result = run_cli(capsys, *args, "--input", FIXTURES / "neither.json")
    assert result.code == 2
    assert result.err.count("\n") == 1, result.err
    assert expected in result.err


def test_threshold_positional_or_option_is_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    positional = run_cli(capsys, "200", "-i", FIXTURES / "mixed.json", "-f", "json").json()
    option = run_cli(capsys, "--threshold-ms", "200", "-i", FIXTURES / "mixed.json", "-f", "json")
    assert option.json()["traces"] == positional["traces"]
    assert positional["criteria"] == {"threshold_ms": 200, "errors_only": False, "slow_by": None}
    errors_only = run_cli(capsys, "--errors-only", "-i", FIXTURES / "mixed.json", "-f", "json")
    assert errors_only.code == 0
    assert errors_only.json()["criteria"] == {
        "threshold_ms": None,
        "errors_only": True,
        "slow_by": None,
    }


@pytest.mark.parametrize(
    ("fixture", "fail_on", "code"),
    [
        ("neither.json", None, 0),
        ("neither.json", "any", 0),
        ("slow_only.json", None, 0),  # flagged, but nobody asked to fail
        ("slow_only.json", "slow", 1),
        ("slow_only.json", "error", 0),
        ("slow_only.json", "any", 1),
        ("error_only.json", "slow", 0),
        ("error_only.json", "error", 1),
        ("error_only.json", "any", 1),
        ("slow_and_error.json", "slow", 1),
        ("slow_and_error.json", "error", 1),
    ],
)
def test_fail_on_exit_codes(
    capsys: pytest.CaptureFixture[str], fixture: str, fail_on: str | None, code: int
) -> None:
    extra = ["--fail-on", fail_on] if fail_on else []
    result = run_cli(capsys, "200", "-i", FIXTURES / fixture, *extra)
    assert result.code == code, result.err


def test_output_file_gets_the_report_and_stderr_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "report.md"
    result = run_cli(
        capsys, "200", "-i", FIXTURES / "mixed.json", "-f", "markdown", "--output", target
    )
    assert result.code == 0 and result.out == ""
    assert "wrote markdown report to" in result.err
    assert target.read_text().startswith("## Trace analysis: ")
    table = tmp_path / "report.txt"
    run_cli(capsys, "200", "-i", FIXTURES / "mixed.json", "--output", table)
    text = table.read_text()
    assert "51000000000000000000000000000001" in text and "\x1b[" not in text  # no colours
    unwritable = run_cli(
        capsys, "200", "-i", FIXTURES / "mixed.json", "--output", tmp_path / "no" / "x"
    )
    assert unwritable.code == 2 and "cannot write" in unwritable.err


def test_stdin_input(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = (FIXTURES / "error_only.json").read_bytes()

    class Stdin:
        buffer = __import__("io").BytesIO(data)

    monkeypatch.setattr(sys, "stdin", Stdin())
    result = run_cli(capsys, "200", "-i", "-", "-f", "json")
    assert result.code == 0
    assert [t["trace_id"] for t in result.json()["traces"]] == ["e1000000000000000000000000000002"]


def test_script_entry_point_runs_and_fails_cleanly(tmp_path: Path) -> None:
    """The real ``python analyze_traces.py``: a report, and a malformed file with no traceback."""
    ok = subprocess.run(
        [sys.executable, "analyze_traces.py", "200", "--input", FIXTURES / "slow_only.json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert ok.returncode == 0, ok.stderr
    assert "51000000000000000000000000000001" in ok.stdout
    assert "inventory-service POST /inventory/reserve" in ok.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    failed = subprocess.run(
        [sys.executable, "analyze_traces.py", "200", "--input", bad, "--fail-on", "any"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 2
    assert failed.stdout == ""
    assert failed.stderr.startswith("analyze_traces.py: error: ")
    assert "Traceback" not in failed.stderr and failed.stderr.count("\n") == 1
