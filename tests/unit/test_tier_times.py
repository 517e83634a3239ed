"""`make test-times` (benchmarks/tier_times.py): the figures it writes come from what pytest
reported, and it rewrites only its own blocks."""

from __future__ import annotations

import pytest

from tests.bench_modules import bench_module

tier_times = bench_module("tier_times")

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="tests.unit.test_edge" name="a" time="0.5"/>
<testcase classname="tests.unit.test_edge" name="b" time="1.5"><skipped message="x"/></testcase>
<testcase classname="tests.e2e.test_stackctl" name="c" time="70.25"/>
<testcase classname="tests.reliability.test_public_edge.TestHost" name="d" time="12"/>
<testcase classname="tests.reliability.test_public_edge" name="e" time="3"><failure/></testcase>
</testsuite></testsuites>"""


def test_tiers_and_modules_are_read_from_the_junit_report() -> None:
    tiers, modules = tier_times.read_junit(JUNIT)
    assert (tiers["unit"].tests, tiers["unit"].skipped, tiers["unit"].seconds) == (2, 1, 2.0)
    assert (tiers["e2e"].tests, tiers["e2e"].seconds) == (1, 70.25)
    assert (tiers["reliability"].tests, tiers["reliability"].failed) == (2, 1)
    assert modules["tests/reliability/test_public_edge.py"] == 15


def test_the_blocks_say_what_was_measured() -> None:
    tiers, modules = tier_times.read_junit(JUNIT)
    run = tier_times.Run(
        wall_s=605,
        unit_wall_s=31.4,
        tiers=tiers,
        modules=modules,
        commit="abc1234",
        when="2026-12-05",
        cores=2,
        load=1.5,
    )
    table = tier_times.operations_block(run)
    assert "| 5 (1 skipped) | 10 min 5 s |" in table
    assert "| of which `tests/e2e` (summed test time) | 1 | 1 min 10 s |" in table
    assert (
        "`tests/e2e/test_stackctl.py` 1 min 10 s, `tests/reliability/test_public_edge.py` 15 s"
        in table
    )
    assert "| `make test-unit` alone (no collector, Jaeger or browser) | 2 | 31 s |" in table
    assert "commit abc1234 on 2 cores, load average 1.5" in table
    assert "`make test` runs 5 tests in 10 min 5 s; `make test-unit` (2 tests" in (
        tier_times.readme_block(run)
    )


def test_only_the_block_is_rewritten_and_a_missing_one_is_an_error() -> None:
    begin, end = tier_times.BEGIN, tier_times.END
    doc = f"before\n{begin} old -->\n| old |\n{end}\nafter\n"
    assert tier_times.replace_block(doc, "NEW", "x.md") == "before\nNEW\nafter\n"
    with pytest.raises(ValueError, match=r"x\.md needs exactly one"):
        tier_times.replace_block("no block here", "NEW", "x.md")


def test_the_docs_carry_the_blocks_it_writes() -> None:
    for path in (tier_times.OPERATIONS, tier_times.README):
        tier_times.replace_block(path.read_text(), "", path.name)
