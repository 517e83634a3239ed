"""What a newcomer met: with no ``--jaeger-url`` the analyzer reads this checkout's running stack
(on its recorded, perhaps moved, ports) and says which Jaeger it read; ``--save FILE`` writes a
live window for a baseline; thresholds take units; an empty window says it is empty."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from stackctl.ports import Ports
from tests.unit import test_analyzer_live
from tests.unit.test_analyzer_live import FakeJaeger, spread
from tests.unit.test_analyzer_support import run_cli
from trace_analysis.cli_common import (
    DEFAULT_JAEGER_URL,
    LOCAL_STACK,
    NO_LOCAL_STACK,
    jaeger_to_read,
    parse_threshold,
)
from trace_analysis.errors import AnalyzerError

Capsys = pytest.CaptureFixture[str]
jaeger = test_analyzer_live.jaeger  # the stand-in Jaeger (v3, and v1 only)


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty run/ of this checkout's stack, and no JAEGER_URL in the environment."""
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv("RUN_DIR", str(run))
    monkeypatch.delenv("JAEGER_URL", raising=False)
    monkeypatch.delenv("TRACE_LINK_BASE", raising=False)
    return run


def record(run: Path, jaeger_port: int) -> None:
    """What `make up` leaves in run/: the ports it used, Jaeger's query port moved."""
    replace(Ports(), jaeger_query=jaeger_port).save(run / "ports.json")


@pytest.fixture
def free_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port


# --- which Jaeger -------------------------------------------------------------------------


def test_no_stack_the_default_and_it_is_said(run_dir: Path) -> None:
    assert jaeger_to_read(None) == (DEFAULT_JAEGER_URL, NO_LOCAL_STACK)


def test_a_record_left_by_a_dead_stack_is_not_read(run_dir: Path, free_port: int) -> None:
    record(run_dir, free_port)  # nothing listens there
    assert jaeger_to_read(None) == (DEFAULT_JAEGER_URL, NO_LOCAL_STACK)


def test_a_given_url_wins(run_dir: Path, jaeger: FakeJaeger) -> None:
    record(run_dir, int(jaeger.url.rsplit(":", 1)[1]))
    assert jaeger_to_read("http://other:16686") == ("http://other:16686", None)


def test_the_running_stack_of_this_checkout_is_read_and_named(
    run_dir: Path, jaeger: FakeJaeger, capsys: Capsys
) -> None:
    record(run_dir, int(jaeger.url.rsplit(":", 1)[1]))
    spread(jaeger, 30)
    table = run_cli(capsys, "200")
    assert table.code == 0, table.err
    assert f"Jaeger at {jaeger.url} ({LOCAL_STACK})" in " ".join(table.out.split())
    assert "30 traces" in table.out
    data = run_cli(capsys, "200", "-f", "json")
    assert data.json()["source"]["jaeger_url"] == jaeger.url
    trace_id = data.json()["traces"][0]["trace_id"]
    explained = run_cli(capsys, "--trace", trace_id)
    assert explained.code == 0 and LOCAL_STACK in " ".join(explained.out.split())


def test_env_jaeger_url_is_a_given_url(
    run_dir: Path, jaeger: FakeJaeger, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAEGER_URL", jaeger.url)
    spread(jaeger, 5)
    result = run_cli(capsys, "200")
    assert result.code == 0 and LOCAL_STACK not in result.out and NO_LOCAL_STACK not in result.out


# --- --save --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["window.jsonl", "window.jsonl.gz"])
def test_save_writes_the_window_read_back_as_the_same_traces(
    run_dir: Path, jaeger: FakeJaeger, capsys: Capsys, tmp_path: Path, name: str
) -> None:
    spread(jaeger, 600)  # several pages: a trace can come on two
    saved = tmp_path / name
    live = run_cli(capsys, "200", "--jaeger-url", jaeger.url, "-f", "json", "--save", saved)
    assert live.code == 0, live.err
    assert "saved the window (600 traces" in live.err and f"--baseline {saved}" in live.err
    if name.endswith(".gz"):
        assert gzip.decompress(saved.read_bytes())  # really gzip
    assert not saved.with_name(name + ".part").exists()
    back = run_cli(capsys, "200", "--input", saved, "-f", "json")
    assert back.code == 0, back.err
    before, after = live.json(), back.json()
    assert after["summary"]["traces"] == 600
    assert [t["trace_id"] for t in after["traces"]] == [t["trace_id"] for t in before["traces"]]
    for key in ("slow", "errors", "flagged", "spans"):
        assert after["summary"][key] == before["summary"][key], key
    # the recipe: a baseline from the same window judges nothing regressed
    compared = run_cli(
        capsys,
        "--jaeger-url",
        jaeger.url,
        "--baseline",
        saved,
        "-f",
        "json",
        "--fail-on",
        "regression",
    )
    assert compared.code == 0, compared.err
    assert compared.json()["comparison"]["operations"]


def test_save_of_an_empty_window_writes_nothing_and_says_so(
    run_dir: Path, jaeger: FakeJaeger, capsys: Capsys, tmp_path: Path
) -> None:
    saved = tmp_path / "w.jsonl"
    result = run_cli(capsys, "200", "--jaeger-url", jaeger.url, "--save", saved)
    assert result.code == 0
    assert "the window is empty: nothing saved" in result.err and not saved.exists()
    assert "NOTHING JUDGED" in result.out


def test_a_failed_read_leaves_no_half_file(
    run_dir: Path, jaeger: FakeJaeger, capsys: Capsys, tmp_path: Path
) -> None:
    spread(jaeger, 20)
    jaeger.failure = (500, "application/json", '{"error":{"httpCode":500,"message":"down"}}')
    saved = tmp_path / "w.jsonl"
    result = run_cli(capsys, "200", "--jaeger-url", jaeger.url, "--save", saved)
    assert result.code == 2 and not saved.exists()
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("args", [["-i", "x.json"], ["--trace", "ab"], ["--baseline-offset", "1h"]])
def test_save_is_refused_where_there_is_no_window(capsys: Capsys, args: list[str]) -> None:
    result = run_cli(capsys, "200", *args, "--save", "/tmp/never.jsonl")
    assert result.code == 2 and "--save writes the window read from Jaeger" in result.err


# --- thresholds with units -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("200", 200_000),
        ("0.5", 500),
        ("200ms", 200_000),
        ("200 ms", 200_000),
        ("1s", 1_000_000),
        ("1.5s", 1_500_000),
        ("500us", 500),
        ("500µs", 500),
        ("2m", 120_000_000),
        (".5s", 500_000),
        ("0", 0),
    ],
)
def test_thresholds_take_units(text: str, us: int) -> None:
    assert parse_threshold(text) == us


@pytest.mark.parametrize("text", ["abc", "1h", "ms", "1,5s", "", "200 mss"])
def test_bad_thresholds_say_what_is_accepted(text: str) -> None:
    with pytest.raises(AnalyzerError, match="give ms"):
        parse_threshold(text)


@pytest.mark.parametrize("form", [["1s"], ["-t", "1s"], ["--threshold-ms", "1000ms"], ["1000"]])
def test_the_command_line_takes_a_threshold_with_a_unit(capsys: Capsys, form: list[str]) -> None:
    from tests.unit.test_analyzer_support import FIXTURES

    result = run_cli(capsys, *form, "-i", FIXTURES / "mixed.json", "-f", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["criteria"]["threshold_ms"] == 1000.0
    table = run_cli(capsys, *form, "-i", FIXTURES / "mixed.json")
    assert "slower than 1000 ms" in table.out
