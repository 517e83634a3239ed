"""The HTML report, rendered by a real browser: headless Chromium (Debian's ``chromium``).

Chromium is a test dependency (``make test`` installs it): when it is missing this test fails
and says how to install it, rather than passing silently by skipping.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_analyzer_compare import checkout_traces, write
from tests.unit.test_analyzer_instances import as_otlp, describe
from tests.unit.test_analyzer_support import FIXTURES, run_cli

FLAGGED = [
    "b0000000000000000000000000000003",
    "51000000000000000000000000000001",
    "5c000000000000000000000000000009",
    "0f000000000000000000000000000006",
    "e1000000000000000000000000000002",
]


def chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        pytest.fail(
            "chromium is not installed; install it with `apt-get install -y chromium` "
            "(make test does) to check that the HTML report renders"
        )
    return found


def render(html: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *extra,
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rendered_html_report_shows_every_flagged_trace(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    result = run_cli(
        capsys, "200", "-i", FIXTURES / "mixed.json", "-f", "html", "--output", report,
        "--jaeger-url", "http://jaeger.example:16686",
    )  # fmt: skip
    assert result.code == 0, result.err
    rendered = render(report, tmp_path / "profile", "--dump-dom")
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    dom = rendered.stdout
    assert "<h1>Trace analysis: 5 flagged</h1>" in dom
    for trace_id in FLAGGED:
        assert f'id="trace-{trace_id}"' in dom  # its waterfall section
        assert f'href="http://jaeger.example:16686/trace/{trace_id}"' in dom
    assert len(re.findall(r'class="bar( cp)?( err)?"', dom)) >= 5 * 3
    # and it paints: a screenshot of the page is a real image, not a blank one
    shot = tmp_path / "report.png"
    painted = render(
        report, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,1600"
    )
    assert painted.returncode == 0, painted.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_rendered_comparison_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The HTML comparison in headless Chromium: its tables, the attribution, and it paints."""
    before = write(tmp_path, "before.json", checkout_traces(1, 400))
    after = write(tmp_path, "after.json", checkout_traces(2, 400, select_factor=2.5))
    page = tmp_path / "comparison.html"
    result = run_cli(capsys, "-i", after, "--baseline", before, "-f", "html", "--output", page)
    assert result.code == 0, result.err
    rendered = render(page, tmp_path / "profile", "--dump-dom")
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    dom = rendered.stdout
    assert "<h1>Compared with the baseline: 3 regressed</h1>" in dom
    assert dom.count("<tr>") == 1 + 3  # the header and the three regressed operations
    assert "<b>GET /checkout</b>: p50 +" in dom and "of which stock SELECT stock +" in dom
    shot = tmp_path / "comparison.png"
    painted = render(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900")
    assert painted.returncode == 0, painted.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_rendered_per_instance_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The per-instance table of an HTML report in headless Chromium: three rows, the
    failing instance in bold and named below."""
    traces = write(tmp_path, "replicas.json", as_otlp(describe(failing={"inventory-b": 2})))
    page = tmp_path / "instances.html"
    result = run_cli(capsys, "1s", "-i", traces, "-f", "html", "--output", page)
    assert result.code == 0, result.err
    rendered = render(page, tmp_path / "profile", "--dump-dom")
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    dom = rendered.stdout
    assert "<h2>Per instance (services seen with several)</h2>" in dom
    assert '<tr style="font-weight:bold"><td>inventory-service</td><td>inventory-b</td>' in dom
    assert dom.count("<td>inventory-service</td><td>inventory-") == 3
    assert "inventory-service instance inventory-b: 40% errors vs 0% on its 2 peers" in dom
    shot = tmp_path / "instances.png"
    painted = render(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900")
    assert painted.returncode == 0, painted.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
