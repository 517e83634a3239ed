"""``make test-times``: how long the tests take, measured, and written where the docs show it.

Runs ``make test`` (what CI runs: install, lint, every tier in one pytest) with a JUnit XML
report, then ``make test-unit`` alone, and writes what it measured between the ``test-times``
markers of docs/operations.md (a table: wall time, tests per tier and their summed time, the
slowest modules) and of README.md (one sentence). Those are the only places these figures are
written, and only this command writes them, from a run in which every test passed; a failing
run writes nothing and exits 1. It takes as long as ``make test`` plus ``make test-unit``.

    .venv/bin/python benchmarks/tier_times.py            # measure, then rewrite both blocks
    .venv/bin/python benchmarks/tier_times.py --dry-run  # measure and print the blocks only
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- test-times:begin", "<!-- test-times:end -->"
MARK = " (written by `make test-times`, benchmarks/tier_times.py: do not edit by hand) -->"
TIERS = ("unit", "e2e", "reliability", "compose", "scale_out", "cluster")


@dataclass
class Tier:
    tests: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0


@dataclass
class Run:
    """What one measuring run found."""

    wall_s: float  # make test
    unit_wall_s: float  # make test-unit alone
    tiers: dict[str, Tier] = field(default_factory=dict)
    modules: dict[str, float] = field(default_factory=dict)  # tests/e2e/test_x.py -> seconds
    commit: str = ""
    when: str = ""
    cores: int = 0
    load: float = 0.0

    @property
    def tests(self) -> int:
        return sum(tier.tests for tier in self.tiers.values())

    @property
    def skipped(self) -> int:
        return sum(tier.skipped for tier in self.tiers.values())


def read_junit(xml: str) -> tuple[dict[str, Tier], dict[str, float]]:
    """Tests per tier (tests/<tier>/...) and seconds per module, from pytest's JUnit XML, whose
    ``classname`` is the dotted module (and class) of each test case."""
    tiers: dict[str, Tier] = defaultdict(Tier)
    modules: dict[str, float] = defaultdict(float)
    for case in ET.fromstring(xml).iter("testcase"):
        parts = case.get("classname", "").split(".")
        if len(parts) < 3 or parts[0] != "tests":
            continue
        tier = tiers[parts[1]]
        seconds = float(case.get("time") or 0)
        tier.tests += 1
        tier.seconds += seconds
        tier.skipped += case.find("skipped") is not None
        tier.failed += case.find("failure") is not None or case.find("error") is not None
        modules[f"tests/{parts[1]}/{parts[2]}.py"] += seconds
    return dict(tiers), dict(modules)


def duration(seconds: float) -> str:
    """``58 s`` or ``10 min 5 s``."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def operations_block(run: Run) -> str:
    """The table for docs/operations.md, markers included."""
    rows = [
        "| command | tests | time |",
        "| --- | --- | --- |",
        f"| `make test` (= `.ci/run`; binaries cached): install check, lint, every tier | "
        f"{run.tests} ({run.skipped} skipped) | {duration(run.wall_s)} |",
    ]
    for name in TIERS:
        tier = run.tiers.get(name, Tier())
        rows.append(
            f"| of which `tests/{name}` (summed test time) | {tier.tests} | "
            f"{duration(tier.seconds)} |"
        )
    slowest = sorted(run.modules.items(), key=lambda item: -item[1])[:5]
    rows.append(
        "| the slowest modules | | "
        + ", ".join(f"`{module}` {duration(seconds)}" for module, seconds in slowest)
        + " |"
    )
    unit = run.tiers.get("unit", Tier())
    rows.append(
        f"| `make test-unit` alone (no collector, Jaeger or browser) | {unit.tests} | "
        f"{duration(run.unit_wall_s)} |"
    )
    note = (
        f"Measured {run.when} at commit {run.commit} on {run.cores} cores, load average "
        f"{run.load:.1f} at the start."
    )
    return "\n".join([BEGIN + MARK, *rows, "", note, END])


def readme_block(run: Run) -> str:
    """The README's sentence, markers included."""
    unit = run.tiers.get("unit", Tier())
    return (
        f"{BEGIN}{MARK}\n`make test` runs {run.tests} tests in {duration(run.wall_s)}; "
        f"`make test-unit` ({unit.tests} tests, no backend needed) in "
        f"{duration(run.unit_wall_s)} is the quick check.\n{END}"
    )


def replace_block(text: str, block: str, where: str) -> str:
    """``text`` with its test-times block replaced by ``block``; ValueError without one."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"{where} needs exactly one {BEGIN} ... {END} block")
    return pattern.sub(lambda _: block, text)


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Run ``argv`` with its output shown as it comes; its wall time, or exit 1 if it fails."""
    print(f"$ {' '.join(argv)}", flush=True)
    t0 = time.monotonic()
    if subprocess.run(argv, cwd=ROOT, env=env).returncode != 0:
        sys.exit(f"error: `{' '.join(argv)}` failed: no figures are written from a failing run")
    return time.monotonic() - t0


def measure() -> Run:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        env = {**os.environ, "PYTEST_ADDOPTS": f"--junitxml={junit}"}
        wall = timed(["make", "test"], env)
        tiers, modules = read_junit(junit.read_text())
    unit_wall = timed(["make", "test-unit"], dict(os.environ))
    if any(tier.failed for tier in tiers.values()):
        sys.exit("error: a test failed: no figures are written from a failing run")
    return Run(
        wall_s=wall,
        unit_wall_s=unit_wall,
        tiers=tiers,
        modules=modules,
        commit=commit or "unknown",
        when=datetime.now(UTC).strftime("%Y-%m-%d"),
        cores=os.cpu_count() or 0,
        load=load,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print, do not write the docs")
    args = parser.parse_args(argv)
    # Checked before the long run: a missing marker is found now, not after it.
    docs = {path: path.read_text() for path in (OPERATIONS, README)}
    for path, text in docs.items():
        replace_block(text, "", path.name)
    run = measure()
    blocks = {OPERATIONS: operations_block(run), README: readme_block(run)}
    for path, block in blocks.items():
        if args.dry_run:
            print(f"\n{path.relative_to(ROOT)}:\n{block}")
        else:
            path.write_text(replace_block(docs[path], block, path.name))
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
