"""Comparing with a baseline, on generated traces (seeded): what changed is named, what did not
is not, and too few samples are said, not guessed."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from rich.console import Console

from tests.unit.test_analyzer_live import FakeJaeger, jaeger, make_trace  # noqa: F401 - fixture
from tests.unit.test_analyzer_support import FIXTURES, SCHEMA, run_cli, write
from trace_analysis.analyses.compare import (
    CompareCriteria,
    Comparison,
    Contribution,
    OperationChange,
    SideStats,
)
from trace_analysis.model.results import Source
from trace_analysis.reports.comparison import attribution_text
from trace_analysis.reports.comparison_table import render_comparison_table

ROOT = ("storefront", "GET /checkout")
STOCK = ("stock", "GET /stock")
SELECT = ("stock", "SELECT stock")
CART = ("cart", "GET /cart")
PRICE = ("pricing", "GET /price")
SERVICES = {"storefront": "p1", "cart": "p2", "stock": "p3", "pricing": "p4"}


def _span(
    trace_id: str,
    span_id: str,
    parent: str | None,
    key: tuple[str, str],
    start: int,
    duration: int,
    kind: str = "server",
    error: str | None = None,
) -> dict[str, Any]:
    tags = [{"key": "span.kind", "type": "string", "value": kind}]
    if error:
        tags.append({"key": "otel.status_code", "type": "string", "value": "ERROR"})
        tags.append({"key": "otel.status_description", "type": "string", "value": error})
    refs = (
        [] if parent is None else [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent}]
    )
    return {
        "traceID": trace_id,
        "spanID": span_id,
        "operationName": key[1],
        "references": refs,
        "startTime": start,
        "duration": duration,
        "tags": tags,
        "processID": SERVICES[key[0]],
    }


def checkout_traces(
    seed: int, count: int, select_factor: float = 1.0, price_failing: float = 0.0
) -> dict[str, Any]:
    """``count`` checkouts: storefront calls cart, then stock (which runs SELECT stock), then
    pricing, one after the other. Durations are log-normal around a few ms; ``select_factor``
    makes SELECT stock slower, ``price_failing`` is the share of failing pricing calls."""
    rng = random.Random(seed)
    traces = []
    t0 = 1_780_000_000_000_000 + seed * 10_000_000_000

    def ms(median: float) -> int:
        return int(1000 * median * rng.lognormvariate(0, 0.25))

    for i in range(count):
        trace_id = f"{seed:08x}{i:024x}"
        start = t0 + i * 100_000
        at = start + ms(0.5)
        cart = ms(8)
        select = int(ms(10) * select_factor)
        stock_start = at + cart + 200
        stock = select + ms(1.5)
        price_start = stock_start + stock + 200
        price = ms(12)
        failed = rng.random() < price_failing
        end = price_start + price + ms(0.8)
        spans = [
            _span(
                trace_id,
                "a1",
                None,
                ROOT,
                start,
                end - start,
                error="pricing failed" if failed else None,
            ),
            _span(trace_id, "b1", "a1", CART, at, cart),
            _span(trace_id, "c1", "a1", STOCK, stock_start, stock),
            _span(trace_id, "c2", "c1", SELECT, stock_start + 600, select, kind="client"),
            _span(
                trace_id,
                "d1",
                "a1",
                PRICE,
                price_start,
                price,
                error="pricing timed out" if failed else None,
            ),
        ]
        processes = {pid: {"serviceName": name, "tags": []} for name, pid in SERVICES.items()}
        traces.append({"traceID": trace_id, "spans": spans, "processes": processes})
    return {"data": traces}


def sides(tmp_path: Path, count: int = 400, **after: float) -> tuple[Path, Path]:
    """A baseline and a candidate of ``count`` checkouts each (different seeds); ``after``
    changes the candidate (see :func:`checkout_traces`)."""
    before = write(tmp_path, "before.json", checkout_traces(1, count))
    return before, write(tmp_path, "after.json", checkout_traces(2, count, **after))


def by_operation(comparison: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(op["service"], op["operation"]): op for op in comparison["operations"]}


def compare(
    capsys: pytest.CaptureFixture[str], baseline: Path, candidate: Path, *extra: object
) -> dict[str, Any]:
    result = run_cli(capsys, "-i", candidate, "--baseline", baseline, "-f", "json", *extra)
    assert result.code == 0, result.err
    report = result.json()
    jsonschema.validate(report, SCHEMA)
    return report["comparison"]


def named(comparison: dict[str, Any], verdict: str = "regressed") -> dict[tuple[str, str], str]:
    """(service, operation) -> reason, of the operations with that verdict."""
    return {
        (op["service"], op["operation"]): op["reason"]
        for op in comparison["operations"]
        if op["verdict"] == verdict
    }


@pytest.mark.parametrize("seeds", [(1, 2), (3, 4), (5, 6)])
def test_two_samples_of_one_distribution_flag_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seeds: tuple[int, int]
) -> None:
    before = write(tmp_path, "before.json", checkout_traces(seeds[0], 400))
    after = write(tmp_path, "after.json", checkout_traces(seeds[1], 400))
    comparison = compare(capsys, before, after)
    assert comparison["counts"] == {
        "regressed": 0,
        "improved": 0,
        "unchanged": 5,
        "too_few_samples": 0,
        "new": 0,
        "gone": 0,
    }
    assert comparison["baseline"]["traces"] == comparison["candidate"]["traces"] == 400
    assert comparison["new_errors"] == []


def test_one_operation_made_slower_is_named_with_the_roots_above_it_not_its_siblings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, after = sides(tmp_path, select_factor=2.5)
    comparison = compare(capsys, before, after)
    assert named(comparison) == {ROOT: "latency", STOCK: "latency", SELECT: "latency"}
    assert named(comparison, "improved") == {}
    ops = by_operation(comparison)
    select = ops[SELECT]
    assert 1.3 < select["change"]["p50_relative"] < 1.7  # 2.5 times: +150%
    assert select["latency_p_value"] < 1e-6
    for sibling in (CART, PRICE):
        assert ops[sibling]["verdict"] == "unchanged"
        assert abs(ops[sibling]["change"]["p50_relative"]) < 0.1
    # the root felt it; the attribution points at the cause
    root = ops[ROOT]
    assert root["entry"] is True
    assert (root["attribution"][0]["service"], root["attribution"][0]["operation"]) == SELECT
    assert root["attribution"][0]["change_ms"] > 10
    others = sum(x["change_ms"] for x in root["attribution"][1:])
    assert others < 0.1 * root["attribution"][0]["change_ms"]
    stock = ops[STOCK]
    assert (stock["attribution"][0]["service"], stock["attribution"][0]["operation"]) == SELECT
    assert ops[SELECT]["entry"] is False and ops[SELECT]["attribution"] == []


def test_an_operation_that_starts_failing_is_named_for_its_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, after = sides(tmp_path, price_failing=0.1)
    comparison = compare(capsys, before, after)
    # the root fails with it (it answers an error when pricing does)
    assert named(comparison) == {PRICE: "errors", ROOT: "errors"}
    ops = by_operation(comparison)
    price = ops[PRICE]
    assert price["baseline"]["errors"] == 0
    assert 0.05 < price["candidate"]["error_rate"] < 0.15
    assert price["errors_p_value"] < 1e-6
    assert price["latency"] is None
    messages = {(e["service"], e["operation"], e["message"]) for e in comparison["new_errors"]}
    assert messages == {(*PRICE, "pricing timed out"), (*ROOT, "pricing failed")}


def test_too_few_samples_are_said_not_guessed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, after = sides(tmp_path, 12, select_factor=3)
    comparison = compare(capsys, before, after)
    assert comparison["counts"]["too_few_samples"] == 5
    assert comparison["counts"]["regressed"] == 0
    assert all(op["regressed"] is False for op in comparison["operations"])
    assert comparison["criteria"]["min_samples"] == 30

    table = run_cli(capsys, "-i", after, "--baseline", before)
    assert table.code == 0, table.err
    assert "Not judged, too few samples" in table.out
    assert "fewer than 30 spans on a side are not judged" in table.out
    assert "stock SELECT stock (12 → 12 spans" in table.out

    # a lower --min-samples lets the same data be judged, and is printed
    judged = compare(capsys, before, after, "--min-samples", "10")
    assert SELECT in named(judged)
    assert judged["criteria"]["min_samples"] == 10


def test_min_change_is_applied_and_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, after = sides(tmp_path, select_factor=1.3)
    assert SELECT in named(compare(capsys, before, after))
    strict = compare(capsys, before, after, "--min-change", "50%")
    assert named(strict) == {}
    assert strict["criteria"]["min_change"] == 0.5
    table = run_cli(capsys, "-i", after, "--baseline", before, "--min-change", "50%")
    assert "by more than 50% and 1 ms" in table.out


def test_fail_on_regression_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = write(tmp_path, "before.json", checkout_traces(1, 400))
    same = write(tmp_path, "same.json", checkout_traces(2, 400))
    slower = write(tmp_path, "slower.json", checkout_traces(3, 400, select_factor=2.5))
    ok = run_cli(capsys, "-i", same, "--baseline", before, "--fail-on", "regression")
    assert ok.code == 0, ok.err
    assert "0 operations regressed" in ok.out
    bad = run_cli(capsys, "-i", slower, "--baseline", before, "--fail-on", "regression")
    assert bad.code == 1, bad.err
    assert "Regressed" in bad.out and "of which stock SELECT stock +" in bad.out
    # without a baseline there is nothing to regress from: a usage error, not a silent 0
    usage = run_cli(capsys, "-i", slower, "200", "--fail-on", "regression")
    assert usage.code == 2 and "needs a baseline" in usage.err


def test_markdown_and_html_name_the_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, after = sides(tmp_path, select_factor=2.5)
    markdown = run_cli(capsys, "-i", after, "--baseline", before, "-f", "markdown")
    assert markdown.code == 0, markdown.err
    assert markdown.out.startswith("## Compared with the baseline: 3 regressed")
    assert "| stock | SELECT stock | latency |" in markdown.out
    html = run_cli(capsys, "-i", after, "--baseline", before, "-f", "html", "40")
    assert html.code == 0, html.err
    assert "<h1>Compared with the baseline: 3 regressed</h1>" in html.out
    assert "of which stock SELECT stock" in html.out
    assert "Flagged traces, slowest first" in html.out  # the threshold adds the usual report


def test_bad_baseline_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = write(tmp_path, "before.json", checkout_traces(1, 5))
    cases = [
        (["--baseline", tmp_path / "missing.json"], "no such file"),
        (["--baseline", before, "--baseline-offset", "1d"], "give one baseline"),
        (["--baseline-offset", "1d"], "--baseline-offset shifts the live window"),
        (["--baseline-window", "yesterday"], "use START..END"),
        (["--baseline-window", "2026-01-02T00:00:00Z..2026-01-01"], "END is not after START"),
        (["--baseline", before, "--min-change", "lots"], "invalid --min-change"),
    ]
    for args, message in cases:
        result = run_cli(capsys, "-i", before, *args)
        assert result.code == 2, (args, result.out)
        assert message in result.err and result.err.count("\n") == 1, result.err


def test_live_baseline_offset_reads_the_same_window_a_day_earlier(
    jaeger: FakeJaeger,  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = time.time_ns() // 1000
    day = 86_400_000_000
    jaeger.traces = [make_trace(i, now - 60_000_000 - i * 1_000_000) for i in range(40)]
    jaeger.traces += [
        make_trace(100 + i, now - day - 60_000_000 - i * 1_000_000, slow=True) for i in range(40)
    ]
    args = ["--jaeger-url", jaeger.url, "--lookback", "10m", "--baseline-offset", "1d"]
    result = run_cli(capsys, *args, "-f", "json")
    assert result.code == 0, result.err
    comparison = result.json()["comparison"]
    assert comparison["baseline"]["traces"] == comparison["candidate"]["traces"] == 40
    ends = sorted(int(q["end"]) for q in jaeger.queries)
    assert abs(ends[0] - (ends[1] - day)) < 5_000_000  # the same window, a day apart
    # the baseline was slow (300 ms): now everything is faster
    assert set(named(comparison, "improved")) == {
        ("api-gateway", "POST /api/orders"),
        ("order-service", "POST /orders"),
    }


def test_scipy_is_imported_only_when_comparing(tmp_path: Path) -> None:
    """scipy.stats costs seconds of start-up (docs/analyzer.md): a run without a baseline
    must not load it."""
    before, after = sides(tmp_path, 40)
    probe = (
        "import sys; from trace_analysis.cli import main; code = main(sys.argv[1:]); "
        "print('scipy' in sys.modules, code)"
    )
    repo = Path(__file__).resolve().parents[2]

    def loaded(*args: object) -> str:
        run = subprocess.run(
            [sys.executable, "-c", probe, *map(str, args), "-f", "json", "--output", os.devnull],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.split()[-2]

    assert loaded("200", "-i", after) == "False"
    assert loaded("-i", after, "--baseline", before) == "True"


def test_an_overlapping_baseline_window_is_warned_about(
    jaeger: FakeJaeger,  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = time.time_ns() // 1000
    jaeger.traces = [make_trace(i, now - 360_000_000 - i * 1_000_000) for i in range(5)]
    start, end = (datetime.fromtimestamp(now / 1e6 - ago, UTC).isoformat() for ago in (1200, 300))
    window = f"{start}..{end}"
    result = run_cli(
        capsys, "--jaeger-url", jaeger.url, "--lookback", "10m", "--baseline-window", window
    )
    assert result.code == 0, result.err
    assert "warning: the baseline window overlaps the candidate's" in result.out
    assert "Not judged, too few samples" in result.out  # the same 5 traces on each side


def test_a_file_compared_with_a_live_window_holds_the_same_service(
    jaeger: FakeJaeger,  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Live mode reads api-gateway's traces; from a file on the other side, only those count,
    not the checkouts of another service that the same export holds."""
    now = time.time_ns() // 1000
    jaeger.traces = [make_trace(i, now - 60_000_000 - i * 1_000_000) for i in range(40)]
    export = checkout_traces(1, 40)
    export["data"] += [make_trace(100 + i, now - 3_600_000_000) for i in range(40)]
    before = write(tmp_path, "before.json", export)
    result = run_cli(
        capsys, "--jaeger-url", jaeger.url, "--lookback", "10m", "--baseline", before, "-f", "json"
    )
    assert result.code == 0, result.err
    comparison = result.json()["comparison"]
    assert comparison["baseline"]["traces"] == 40
    assert comparison["baseline"]["source"]["service"] == "api-gateway"
    assert comparison["counts"]["gone"] == 0
    assert comparison["counts"]["unchanged"] == 2


# -- a comparison that judged nothing must not read as a pass ----------------------------------


@pytest.mark.parametrize(
    ("baseline", "problem"),
    [
        (None, "the baseline has no traces"),  # a new stack, a mistyped window
        (5, "no operation has 30 spans on both sides"),  # too few to judge anything
    ],
)
def test_a_baseline_that_judges_nothing_says_so_first_and_fails_a_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], baseline: int | None, problem: str
) -> None:
    before = (
        FIXTURES / "empty.json"
        if baseline is None
        else write(tmp_path, "small.json", checkout_traces(1, baseline))
    )
    after = write(tmp_path, "after.json", checkout_traces(2, 400, select_factor=2.5))
    table = run_cli(capsys, "-i", after, "--baseline", before)
    assert table.code == 0, table.err
    assert table.out.splitlines()[0] == f"Compared with the baseline: NOTHING JUDGED, {problem}"
    markdown = run_cli(capsys, "-i", after, "--baseline", before, "-f", "markdown")
    assert markdown.out.startswith(f"## Compared with the baseline: NOTHING JUDGED, {problem}")
    for gate in ("regression", "any"):
        gated = run_cli(capsys, "-i", after, "--baseline", before, "--fail-on", gate)
        assert gated.code == 2, (gate, gated.err)
        assert gated.err.startswith(f"analyze_traces.py: error: --fail-on {gate}: nothing was")
        assert problem in gated.err and gated.err.count("\n") == 1
        assert "NOTHING JUDGED" in gated.out  # the report is still written
    document = compare(capsys, before, after)
    assert any(problem in warning for warning in document["warnings"])


def _change(path_changes: dict[str, tuple[float, float]]) -> OperationChange:
    """A regressed entry operation whose requests' critical-path self times moved as given
    (operation -> (before µs, after µs))."""
    side = SideStats(400, 0, 10_000, 20_000, 30_000, 1_000, 400)
    contributions = [Contribution("s", name, b, a) for name, (b, a) in path_changes.items()]
    grown = sorted((c for c in contributions if c.change_us > 0), key=lambda c: -c.change_us)
    return OperationChange(
        "s",
        "root",
        True,
        side,
        SideStats(400, 0, 25_750, 40_000, 50_000, 1_000, 400),
        "regressed",
        latency="regressed",
        attribution=grown,
        mean_change_us=sum(c.change_us for c in contributions),
        growth_us=sum(c.change_us for c in grown),
    )


def test_attribution_shares_are_of_the_growth_and_never_pass_100_percent() -> None:
    # SELECT grew 15.75 ms, cache got 0.75 ms faster: the mean moved +15 ms; a share of the
    # mean would read 105%
    text = attribution_text(
        _change({"SELECT": (1_000, 16_750), "cache": (1_000, 250), "root": (5_000, 5_000)})
    )
    assert text == (
        "p50 +15.8 ms (mean +15.0 ms: +15.8 ms grown, -750 µs shrunk), of which "
        "s SELECT +15.8 ms (100%)"
    )
    both = attribution_text(_change({"SELECT": (1_000, 11_000), "root": (5_000, 10_000)}))
    assert both is not None and "(67%)" in both and "(33%)" in both and "shrunk" not in both


def test_a_long_percentage_stays_on_its_line_in_the_regression_table() -> None:
    change = _change({"SELECT": (1_000, 16_750)})
    assert change.baseline is not None and change.candidate is not None
    change.baseline.p99_us, change.candidate.p99_us = 10, 1_234_567  # +12,345,570%
    comparison = Comparison(
        Source("file", "", "before.json"), CompareCriteria(), 400, 800, 400, 800, [change], []
    )
    console = Console(record=True, width=120, file=io.StringIO())
    render_comparison_table(comparison, "file after.json", console)
    lines = console.export_text().splitlines()
    assert any("(+1,235 ms, 123,457x)" in line for line in lines), "\n".join(lines)
    assert not any("…" in line for line in lines)  # nothing cut either
