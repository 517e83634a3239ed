"""The local stack runner itself: idempotent start, no false health, stale pid files ignored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stackctl.process import ManagedProcess, StartError
from stackctl.stack import Stack


def test_up_twice_starts_nothing_twice(stack: Stack) -> None:
    before = {proc.name: proc.pid() for proc in stack.processes}
    lines: list[str] = []
    stack.up(timeout=30, report=lines.append)
    assert {proc.name: proc.pid() for proc in stack.processes} == before
    assert len(lines) == len(stack.processes)
    assert all("already running" in line for line in lines)


def test_a_second_stack_on_the_same_ports_fails_clearly(stack: Stack, tmp_path: Path) -> None:
    """Someone else's process answering our health URL is never taken for ours."""
    other = Stack(tmp_path / "run", tmp_path / "data", ports=stack.ports, with_prometheus=False)
    with pytest.raises(StartError, match="another process already answers"):
        other.up(timeout=10, report=lambda line: None)
    assert all(proc.pid() is None for proc in other.processes), "it started nothing"


def test_a_stale_pid_file_is_not_ours(tmp_path: Path) -> None:
    """A pid file whose pid now belongs to another program is dropped, never signalled."""
    proc = ManagedProcess("x", [sys.executable, "-c", "pass"], "http://127.0.0.1:9/", tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        proc.pid_file.write_text(f"{sleeper.pid} 1\n")  # right pid, wrong start time
        assert proc.pid() is None
        assert not proc.pid_file.exists()
        assert proc.stop() is False
        assert sleeper.poll() is None, "the unrelated process was not touched"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_process_that_dies_at_start_names_its_log(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "broken",
        [sys.executable, "-c", "import sys; print('cannot bind'); sys.exit(3)"],
        "http://127.0.0.1:9/",
        tmp_path,
    )
    proc.start()
    with pytest.raises(StartError, match=r"broken exited during start-up; see .*broken\.log"):
        proc.wait_healthy(deadline=float("inf"))
    assert "cannot bind" in proc.log_file.read_text()
    assert proc.pid() is None
    assert not proc.pid_file.exists(), "the stale pid file is cleaned up"
