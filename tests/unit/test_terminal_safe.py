"""Text from spans printed by the analyzer has every control character made visible
(``servicekit/terminal.py``): each class of character, in each output (terminal table,
``--trace``, Markdown, HTML, JSON, the comparison, error messages), and rich markup in span
text printed as written."""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servicekit.terminal import UNSAFE, visible, visible_all, visible_json
from tests.unit.test_analyzer_support import run_cli

ESC = "\x1b"
# One of each kind a terminal acts on, as a span could carry it.
HOSTILE = {
    "OSC 0 title": f"{ESC}]0;owned{ESC}\\",
    "OSC 52 clipboard": f"{ESC}]52;c;ZWNobyBwd25lZA=={ESC}\\",
    "OSC 8 hyperlink": f"{ESC}]8;;http://evil.example/{ESC}\\",
    "CSI clear": f"{ESC}[2J",
    "CSI rewrite line": f"{ESC}[1A{ESC}[2K",
    "DCS": f"{ESC}Pq#0;2;0;0;0{ESC}\\",
    "8-bit CSI": "\u009b2J",
    "8-bit OSC": "\u009d0;owned\u009c",
    "NEL": "\u0085",
    "BEL": "\x07",
    "backspace": "ab\x08\x08ok",
    "carriage return": "ERROR\rok   ",
    "newline": "line one\nok",
    "tab": "a\tb",
    "NUL": "\x00",
    "DEL": "\x7f",
    "RLO": "\u202egnp.exe",
    "LRE/PDF": "\u202aabc\u202c",
    "RLI/PDI": "\u2067abc\u2069",
    "LRM/RLM/ALM": "\u200e\u200f\u061c",
    "zero-width space": "api-gate\u200bway",
    "BOM": "\ufeffx",
    "tag characters": "ok\U000e0049\U000e0047\U000e004e",
    "line separator": "a\u2028b\u2029c",
}
MARKUP = "[bold red]marked[/bold red] [link=http://evil.example/]click[/link] :thumbs_up:"
SGR = re.compile(f"{ESC}\\[[0-9;]*m")  # the styles rich itself writes on a terminal


def _unsafe_left(text: str, *, newlines_ok: bool = True) -> list[str]:
    """The characters of ``text`` a terminal would act on (its own line breaks aside)."""
    found = UNSAFE.findall(SGR.sub("", text))
    return [c for c in found if not (newlines_ok and c == "\n")]


# --- the function --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_kind_is_made_visible(name: str) -> None:
    out = visible(HOSTILE[name])
    assert UNSAFE.search(out) is None
    assert out.isprintable()


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (f"{ESC}[2J", "\\x1b[2J"),
        ("a\nb", "a\\nb"),
        ("a\r\tb", "a\\r\\tb"),
        ("\x00\x7f", "\\x00\\x7f"),
        ("\u009b", "\\x9b"),
        ("\u202e", "\\u202e"),
        ("\U000e0041", "\\U000e0041"),
        ("\ud800", "\\ud800"),
        ("C:\\path ok é 漢字 🙂", "C:\\path ok é 漢字 🙂"),
    ],
)
def test_escapes_are_python_style(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_newlines_kept_only_when_asked() -> None:
    assert visible(f"one{ESC}[2J\ntwo\u202e", newlines=True) == "one\\x1b[2J\ntwo\\u202e"
    assert visible("one\ntwo") == "one\\ntwo"


def test_safe_text_is_returned_as_is() -> None:
    text = "POST /api/orders 漢字"
    assert visible(text) is text


def test_the_class_holds_every_control_format_and_separator_character() -> None:
    """Every code point this Python's Unicode database calls Cc, Cf, Zl, Zp or Cs is escaped;
    the class holds nothing else but code points a later Unicode made Cf."""
    wanted = {"Cc", "Cf", "Zl", "Zp", "Cs"}
    missing = [
        hex(c)
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) in wanted and not UNSAFE.match(chr(c))
    ]
    extra = [
        hex(c)
        for c in range(sys.maxunicode + 1)
        if UNSAFE.match(chr(c)) and unicodedata.category(chr(c)) not in wanted | {"Cn"}
    ]
    assert missing == [] and extra == []


_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|n|r|t)")
_NAMED = {"n": "\n", "r": "\r", "t": "\t"}


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: _NAMED.get(m[1]) or chr(int(m[1][1:], 16)), text)


@given(st.text().map(lambda text: text.replace("\\", "/")))
def test_property_nothing_unsafe_survives_and_the_text_reads_back(text: str) -> None:
    """No unsafe character is left, and (for text without a backslash of its own, where an
    escape is unambiguous) the escapes give the original text back."""
    out = visible(text)
    assert UNSAFE.search(out) is None
    assert _unescape(out) == text


@given(st.text())
def test_property_lines_mode_keeps_exactly_the_line_breaks(text: str) -> None:
    out = visible(text, newlines=True)
    assert out.count("\n") == text.count("\n")
    assert all(UNSAFE.search(line) is None for line in out.split("\n"))


@given(st.dictionaries(st.text(), st.text()))
def test_property_json_escaping_keeps_the_values(value: dict[str, str]) -> None:
    encoded = json.dumps(value, ensure_ascii=False, indent=2)
    escaped = visible_json(encoded)
    assert json.loads(escaped) == value
    assert _unsafe_left(escaped) == []


def test_visible_all_walks_dataclasses_lists_and_dicts() -> None:
    from trace_analysis.model.results import Culprit, ErrorOrigin

    origin = ErrorOrigin("s1", f"svc{ESC}[2J", "op", "boom\n\u202e", 500, 1)
    value = {"k\x07": [origin, (Culprit("a\x9b", "b", 1, 0.5),)], "n": 3}
    out = visible_all(value)
    assert out == {
        "k\\x07": [
            ErrorOrigin("s1", "svc\\x1b[2J", "op", "boom\\n\\u202e", 500, 1),
            (Culprit("a\\x9b", "b", 1, 0.5),),
        ],
        "n": 3,
    }
    assert origin.service == f"svc{ESC}[2J"  # the original is not changed


# --- the analyzer's outputs ----------------------------------------------------------------


def _attr(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def hostile_trace(payload: str, trace_id: str = "5" * 32, slow_ms: int = 300) -> dict[str, Any]:
    """An OTLP JSON document whose every printed text carries ``payload``: service and
    operation names, the status message, the exception event, fault attributes."""
    ms = 1_000_000
    start = 1_700_000_000_000_000_000

    def resource(service: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "resource": {"attributes": [_attr("service.name", service)]},
            "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}],
        }

    root, child = "1" * 16, "2" * 16
    return {
        "resourceSpans": [
            resource(
                f"gateway{payload}",
                [
                    {
                        "traceId": trace_id,
                        "spanId": root,
                        "name": f"POST /api/orders{payload}",
                        "kind": 2,
                        "startTimeUnixNano": str(start),
                        "endTimeUnixNano": str(start + slow_ms * ms),
                        "attributes": [
                            {"key": "http.response.status_code", "value": {"intValue": "502"}}
                        ],
                        "status": {"code": 2, "message": f"upstream failed{payload}"},
                    }
                ],
            ),
            resource(
                f"inventory{payload}",
                [
                    {
                        "traceId": trace_id,
                        "spanId": child,
                        "parentSpanId": root,
                        "name": f"reserve{payload}ok",
                        "kind": 2,
                        "startTimeUnixNano": str(start + 5 * ms),
                        "endTimeUnixNano": str(start + (slow_ms - 5) * ms),
                        "attributes": [
                            _attr("fault.kind", f"latency{payload}"),
                            _attr("fault.value", f"250{payload}"),
                        ],
                        "events": [
                            {
                                "name": "exception",
                                "timeUnixNano": str(start + 6 * ms),
                                "attributes": [
                                    _attr("exception.type", f"Boom{payload}"),
                                    _attr("exception.message", f"stock{payload}"),
                                ],
                            }
                        ],
                        "status": {"code": 2},
                    }
                ],
            ),
        ]
    }


ALL = "".join(HOSTILE.values()) + MARKUP


@pytest.fixture
def hostile_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "4000")  # no cell wrapped: the texts are found whole
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(hostile_trace(ALL)))
    return path


OUTPUTS = [
    pytest.param(["--format", "table"], id="table"),
    pytest.param(["--format", "markdown"], id="markdown"),
    pytest.param(["--format", "html"], id="html"),
    pytest.param(["--trace", "5" * 32], id="trace-table"),
    pytest.param(["--trace", "5" * 32, "--format", "markdown"], id="trace-markdown"),
    pytest.param(["--trace", "5" * 32, "--format", "html"], id="trace-html"),
]


@pytest.mark.parametrize("args", OUTPUTS)
def test_every_text_output_makes_span_text_visible(
    capsys: pytest.CaptureFixture[str], hostile_file: Path, args: list[str]
) -> None:
    result = run_cli(capsys, "100", "--input", hostile_file, *args)
    assert result.code == 0, result.err
    assert _unsafe_left(result.out) == []
    # shown, not dropped (Markdown doubles a backslash to keep it one)
    assert re.search(r"\\{1,2}x1b\]0;owned\\{1,2}x1b", result.out)
    assert re.search(r"\\{1,2}u202egnp\.exe", result.out)
    assert "Boom" in result.out and "stock" in result.out  # the text itself is still there


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("args", [*OUTPUTS, pytest.param(["--format", "json"], id="json")])
def test_each_kind_in_each_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, args: list[str]
) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(hostile_trace(HOSTILE[name])))
    result = run_cli(capsys, "100", "--input", path, *args)
    assert result.code == 0, result.err
    assert _unsafe_left(result.out) == []
    if "json" in args:
        (trace,) = json.loads(result.out)["traces"]
        assert trace["root"]["service"] == f"gateway{HOSTILE[name]}"  # the value kept
    elif args == ["--format", "table"] or args == ["--trace", "5" * 32]:  # plain text views
        assert visible(HOSTILE[name]) in result.out


def test_on_a_real_terminal_only_rich_styles_are_written(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, hostile_file: Path
) -> None:
    """With colours on (rich writes SGR sequences), those are the only escapes."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    for args in (["--format", "table"], ["--trace", "5" * 32]):
        result = run_cli(capsys, "100", "--input", hostile_file, *args)
        assert SGR.search(result.out), "colours were not on: the test proves nothing"
        assert _unsafe_left(result.out) == []


@pytest.mark.parametrize("args", [["--format", "table"], ["--trace", "5" * 32]])
def test_span_text_is_not_rich_markup(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str]
) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(hostile_trace(MARKUP)))
    result = run_cli(capsys, "100", "--input", path, *args, "--top", "1")
    assert result.code == 0, result.err
    assert "[bold red]marked[/bold red]" in result.out
    assert "[link=http://evil.example/]click[/link]" in result.out
    assert ":thumbs_up:" in result.out


def test_json_keeps_the_values_and_prints_inertly(
    capsys: pytest.CaptureFixture[str], hostile_file: Path
) -> None:
    result = run_cli(capsys, "100", "--input", hostile_file, "--format", "json")
    assert result.code == 0, result.err
    assert _unsafe_left(result.out) == []
    (trace,) = result.json()["traces"]
    assert trace["root"]["service"] == f"gateway{ALL}"


@pytest.mark.parametrize("fmt", ["table", "markdown", "html", "json"])
def test_the_comparison_makes_span_text_visible(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str
) -> None:
    baseline, candidate = tmp_path / "base.json", tmp_path / "cand.json"
    baseline.write_text(json.dumps(hostile_trace(ALL, "6" * 32, slow_ms=50)))
    candidate.write_text(json.dumps(hostile_trace(ALL, "7" * 32, slow_ms=400)))
    result = run_cli(
        capsys, "--input", candidate, "--baseline", baseline, "--min-samples", "2", "-f", fmt
    )
    assert result.code == 0, result.err
    assert _unsafe_left(result.out) == []
    assert "gateway" in result.out


def test_error_messages_quoting_input_make_it_visible(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for args in (
        ["--trace", f"abc{ESC}]0;owned{ESC}\\\u202e"],
        ["--lookback", f"1h{ESC}[2J\u009b"],
        ["--input", tmp_path / f"missing{ESC}[2J\u202e.json", "1"],
    ):
        result = run_cli(capsys, *args)
        assert result.code == 2
        assert _unsafe_left(result.err) == []
        assert result.err.count("\n") == 1, result.err


# --- stackctl ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [False, True])
def test_stackctl_logs_show_control_characters_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: bool
) -> None:
    """A request line whose path carries escapes (JSON encodes C0, not C1 nor bidi), a plain
    line with raw ESC, read by ``stackctl logs``, readable or ``--raw``."""
    from typer.testing import CliRunner

    from stackctl.__main__ import app

    logs = tmp_path / "run" / "logs"
    logs.mkdir(parents=True)
    record = {
        "time": "2026-01-01T00:00:00Z",
        "level": "info",
        "message": f"GET /x{HOSTILE['8-bit CSI']}{HOSTILE['RLO']} {MARKUP}",
        "user_agent": HOSTILE["OSC 0 title"],
    }
    lines = [json.dumps(record, ensure_ascii=False), f"plain {HOSTILE['CSI rewrite line']} ok"]
    (logs / "api-gateway.log").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["logs", "api-gateway", *(["--raw"] if raw else [])])
    assert result.exit_code == 0, result.output
    assert _unsafe_left(result.output) == []
    assert "\\x9b2J" in result.output and "\\u202egnp.exe" in result.output
    assert "plain \\x1b[1A\\x1b[2K ok" in result.output
    assert "[bold red]marked[/bold red]" in result.output


@pytest.mark.parametrize("module", ["stackctl.__main__", "stackctl.fault_demo"])
def test_markup_built_messages_print_span_text_as_written(module: str) -> None:
    """stackctl's consoles (markup on, for its own colours) print span text as written."""
    import importlib

    from servicekit.terminal import visible_markup

    console = importlib.import_module(module).console
    with console.capture() as captured:
        console.print(f"[red]MISMATCH[/red]: {visible_markup(MARKUP + HOSTILE['OSC 0 title'])}")
    out = captured.get()
    assert "[bold red]marked[/bold red] [link=http://evil.example/]click[/link]" in out
    assert ":thumbs_up:" in out
    assert "\x1b]8;" not in out, "no hyperlink was made"
    assert "\\x1b]0;owned" in out
    assert _unsafe_left(out) == []


def test_trace_markdown_heading_holds_no_html(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(hostile_trace("<img src=x onerror=alert(1)>|```")))
    result = run_cli(capsys, "--trace", "5" * 32, "--input", path, "-f", "markdown")
    heading = next(line for line in result.out.splitlines() if line.startswith("### "))
    assert "<img" not in heading and "&lt;img src=x onerror=alert(1)&gt;\\|" in heading
    body = result.out.split("```text\n", 1)[1]
    assert all(not line.lstrip().startswith("```") for line in body.splitlines()[:-1])


def test_the_fault_demo_prints_service_names_inert() -> None:
    """`make demo-faults` prints the services the analyzer blamed, names taken from spans."""
    from collections import Counter

    from stackctl import fault_demo

    hostile = f"svc{HOSTILE['OSC 0 title']}{HOSTILE['RLO']}{MARKUP}"
    blamed = fault_demo.verdicts(
        visible_all(
            {
                "traces": [
                    {
                        "trace_id": "ab",
                        "slow": True,
                        "error": False,
                        "culprit": {"service": hostile},
                        "error_origin": None,
                    }
                ]
            }
        ),
        {"ab"},
    )
    assert blamed == {visible(hostile): Counter({fault_demo.SLOW: 1})}
    with fault_demo.console.capture() as captured:
        fault_demo.say_verdicts(blamed)
    out = captured.get()
    assert _unsafe_left(out) == [] and "[bold red]marked[/bold red]" in out
