"""``--trace ID`` on a saved file: the waterfall in the terminal, Markdown, JSON and HTML, and
an unknown id (live fetching by id is in test_analyzer_live.py)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from tests.unit.test_analyzer_support import FIXTURES, SCHEMA, run_cli

CASES = FIXTURES / "cases"
OTLP = CASES / "otlp_v3_get_trace.json"
OTLP_ID = "0000000000000000000000000000e001"


def test_terminal_waterfall_then_culprit_and_first_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run_cli(capsys, "--trace", OTLP_ID, "--input", OTLP)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"Trace {OTLP_ID}  gateway POST /api/orders  250.0 ms  ERROR"
    rows = [line for line in lines if "█" in line and "+" in line]
    # the span tree, indented, every span on the critical path (marked *), bars on one axis
    assert [row.split("+")[0].rstrip() for row in rows] == [
        "* gateway POST /api/orders",
        "*   gateway POST",
        "*     inventory POST /reserve",
    ]
    bars = [row.count("█") for row in rows]
    assert bars[0] == 40 and bars[0] > bars[1] > bars[2] > 30  # 250, 230, 220 ms of 250
    starts = [row.index("█") for row in rows]
    assert starts[0] < starts[1] < starts[2]  # +0, +10, +15 ms on the same axis
    assert all(row.endswith("ERROR 503") for row in rows)
    assert (
        "culprit: inventory POST /reserve: 220.0 ms of self time on the critical path, "
        "88% of the latency" in lines
    )
    assert (
        "first failure: inventory POST /reserve: TimeoutError: stock db timed out (HTTP 503); "
        "then 2 more failing span(s)" in lines
    )


def test_a_threshold_marks_the_trace_slow_and_notes_are_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run_cli(capsys, "100", "--trace", "d001", "--input", CASES / "shared_span_id.json")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0].endswith("80.0 ms  ERROR")  # 80 ms is not over 100 ms
    assert "note: 1 span(s) share their span id" in result.out
    slow = run_cli(capsys, "50", "--trace", "d001", "--input", CASES / "shared_span_id.json")
    assert "SLOW  ERROR" in slow.out.splitlines()[0]


def test_json_markdown_and_html_give_the_same_trace(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_cli(capsys, "--trace", "e001", "--input", OTLP, "--format", "json").json()
    jsonschema.validate(data, SCHEMA)
    (trace,) = data["traces"]
    assert data["source"]["trace_ids"] == ["e001"] and data["source"]["api"] is None
    assert [(r["depth"], r["service"], r["critical_path"]) for r in trace["waterfall"]] == [
        (0, "gateway", True),
        (1, "gateway", True),
        (2, "inventory", True),
    ]
    assert trace["waterfall"][2]["start_offset_ms"] == 15.0
    markdown = run_cli(capsys, "--trace", "e001", "--input", OTLP, "--format", "markdown").out
    assert markdown.startswith(f"### Trace {OTLP_ID}")
    assert "```text" in markdown and "*     inventory POST /reserve" in markdown
    html = run_cli(capsys, "--trace", "e001", "--input", OTLP, "--format", "html").out
    assert f'id="trace-{OTLP_ID}"' in html and "stock db timed out" in html


def test_several_traces_in_the_order_asked(capsys: pytest.CaptureFixture[str]) -> None:
    path = CASES / "ndjson_traces.jsonl"
    data = run_cli(capsys, "--trace", "b72", "--trace", "b71", "-i", path, "-f", "json").json()
    assert [t["root"]["service"] for t in data["traces"]] == ["svc-b", "svc-a"]


def test_unknown_or_malformed_id_is_exit_2_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "--trace", "e001", "--trace", "beef", "--input", OTLP)
    assert result.code == 2 and result.out == ""
    assert result.err == f"analyze_traces.py: error: trace beef not found in {OTLP}\n"
    # a file may use ids that are not hex, so such an id is looked for, not refused
    word = run_cli(capsys, "--trace", "xyz", "--input", OTLP)
    assert word.err == f"analyze_traces.py: error: trace xyz not found in {OTLP}\n"
    bad = run_cli(capsys, "--trace", "a b", "--input", OTLP)
    assert bad.code == 2
    assert bad.err == (
        "analyze_traces.py: error: --trace 'a b' is not a trace id (the id as the file writes "
        "it, without spaces or '/')\n"
    )


def test_a_whole_traceresponse_value_is_refused_with_its_trace_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README points at the `traceresponse` header: pasting its whole value names the id."""
    value = f"00-{OTLP_ID}-cb0635b52de9366b-03"
    result = run_cli(capsys, "--trace", value, "--jaeger-url", "http://127.0.0.1:9")
    assert result.code == 2 and result.out == ""
    assert result.err == (
        f"analyze_traces.py: error: --trace '{value}' is not a trace id (up to 32 hex digits); "
        f"it is a whole traceparent/traceresponse value, whose trace id is {OTLP_ID}: "
        f"--trace {OTLP_ID}\n"
    )
    assert "whose trace id" not in run_cli(capsys, "--trace", "00-zz", "-i", OTLP).err


def test_html_of_a_healthy_trace_names_it_not_a_flag_count(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--trace explains the traces asked for, flagged or not: the page is titled by the trace
    and names its source, with no window or criteria that --trace does not have."""
    healthy, trace_id = CASES / "float_microseconds.json", "0000000000000000000000000000c001"
    page = tmp_path / "trace.html"
    result = run_cli(
        capsys, "--trace", trace_id, "--input", healthy, "--format", "html", "--output", page
    )
    assert result.code == 0, result.err
    assert "(1 trace(s) explained)" in result.err
    html = page.read_text()
    assert f"<title>Trace {trace_id}</title>" in html
    assert f"trace {trace_id} from file {healthy}" in html
    assert "Trace analysis: 1 flagged" not in html and "Flagged traces" not in html
    assert "None" not in html
    # explained whole, as in the terminal: the culprit of a trace that is not slow too
    assert "<li>culprit: reports render: 4,056 ms, 98% of the latency</li>" in html
