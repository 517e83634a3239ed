"""A failing test's report shows the end of each log of the processes it ran (the full logs stay
in their run directories)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from stackctl.process import ManagedProcess


def attach_logs(report: pytest.TestReport, processes: Iterable[ManagedProcess]) -> None:
    for proc in processes:
        if proc.log_file.exists():
            report.sections.append((f"{proc.name} log ({proc.log_file})", proc.log_tail()))
