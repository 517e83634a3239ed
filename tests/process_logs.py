"""A failing test's report shows the end of each log of the processes it ran (the full logs stay
in their run directories).

A tier's conftest registers the hook by importing it: ``from tests.process_logs import
pytest_runtest_makereport``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from stackctl.process import ManagedProcess


def attach_logs(report: pytest.TestReport, processes: Iterable[ManagedProcess]) -> None:
    for proc in processes:
        if proc.log_file.exists():
            report.sections.append((f"{proc.name} log ({proc.log_file})", proc.log_tail()))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Every fixture value of a failing test that holds ``processes`` (a stack, a collector
    tier...) has the end of each of their logs attached, once."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    procs: dict[str, ManagedProcess] = {}
    for value in getattr(item, "funcargs", {}).values():
        for proc in getattr(value, "processes", None) or []:
            if isinstance(proc, ManagedProcess):
                procs.setdefault(str(proc.log_file), proc)
    attach_logs(report, procs.values())
