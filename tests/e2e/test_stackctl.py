"""The local stack runner itself: idempotent start, no false health, stale pid files ignored."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from stackctl.ports import Ports
from stackctl.process import ManagedProcess, StartError
from stackctl.stack import ROOT, Stack


def test_up_twice_starts_nothing_twice(stack: Stack) -> None:
    before = {proc.name: proc.pid() for proc in stack.processes}
    lines: list[str] = []
    stack.up(timeout=30, report=lines.append)
    assert {proc.name: proc.pid() for proc in stack.processes} == before
    assert len(lines) == len(stack.processes)
    assert all("already running" in line for line in lines)


def test_a_second_stack_on_the_same_ports_fails_clearly(stack: Stack, tmp_path: Path) -> None:
    """Someone else's process on our ports is never taken for ours: nothing starts."""
    other = Stack(tmp_path / "run", tmp_path / "data", ports=stack.ports, with_prometheus=False)
    front = stack.process("jaeger-query-front").pid()
    with pytest.raises(
        StartError, match=rf"JAEGER_QUERY_PORT, for jaeger-query-front\) is in use by pid {front}"
    ):
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


# --- the commands a user types, on moved ports: python -m stackctl / make -------------------


def cli(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackctl", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def user(tmp_path: Path) -> Iterator[tuple[dict[str, str], dict[str, str], Ports]]:
    """(a shell without port variables, the same with every port moved, those ports); the
    stack's run/ and data/ in tmp_path. Whatever was started is stopped afterwards."""
    ports = Ports.free()
    # A user's shell: no port variables, no token, and none of the variables of a make that
    # runs this suite (under one, `make` would print "Entering directory" lines).
    plain = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_PORT")
        and key not in ("ADMIN_TOKEN", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")
    }
    plain |= {"RUN_DIR": str(tmp_path / "run"), "DATA_DIR": str(tmp_path / "data")}
    moved = plain | {Ports.variable(f.name): str(getattr(ports, f.name)) for f in fields(ports)}
    yield plain, moved, ports
    cli(plain, "down")
    cli(moved, "down")


def test_a_moved_stack_from_a_busy_port_to_demo_faults_and_down(
    user: tuple[dict[str, str], dict[str, str], Ports], tmp_path: Path
) -> None:
    plain, moved, ports = user
    run = tmp_path / "run"
    outputs = []

    # a taken port: named with its owner and variable, and nothing started
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports.gateway))
        holder.listen()
        refused = cli(moved, "up")
    outputs.append(refused.stdout + refused.stderr)
    assert refused.returncode == 1, refused.stdout
    assert f"port {ports.gateway} (GATEWAY_PORT, for api-gateway) is in use by pid " in (
        refused.stdout.replace("\n", " ")
    )
    assert not list(run.glob("*.pid")) and "keep running" not in refused.stdout

    # up on moved ports; the commands after it are given no port variable
    started = cli(moved, "up")
    outputs.append(started.stdout + started.stderr)
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"trace browser  http://127.0.0.1:{ports.trace_browser}/" in started.stdout
    token_file = run / "admin-token"
    assert token_file.stat().st_mode & 0o077 == 0
    token = token_file.read_text().strip()

    status = subprocess.run(
        ["make", "-s", "status"], cwd=ROOT, env=plain, capture_output=True, text=True, timeout=120
    )
    outputs.append(status.stdout + status.stderr)
    assert status.returncode == 0, status.stderr
    assert "down" not in status.stdout and status.stdout.count("healthy") >= 7
    assert f"127.0.0.1:{ports.gateway}/readyz" in status.stdout
    assert "\x1b" not in status.stdout + status.stderr, "no escape codes into a pipe"
    assert "[install]" not in status.stderr, "nothing to install: nothing said"

    demo = cli(plain, "demo", "--ok", "1", "--out-of-stock", "1")
    outputs.append(demo.stdout + demo.stderr)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert f"in a browser: http://127.0.0.1:{ports.trace_browser}/trace/" in demo.stdout

    faults = cli(plain, "demo-faults", "--orders", "12", "--error-probability", "0.5")
    outputs.append(faults.stdout + faults.stderr)
    assert faults.returncode == 0, faults.stdout + faults.stderr
    assert "OK: the culprits are inventory-service (slow) and order-service" in faults.stdout

    logs = subprocess.run(
        ["make", "-s", "logs", "P=api-gateway", "N=15"],
        cwd=ROOT, env=plain, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    outputs.append(logs.stdout + logs.stderr)
    lines = logs.stdout.splitlines()
    assert "api-gateway" in lines[0] and len(lines) == 16, logs.stdout
    assert not any(line.startswith("{") for line in lines), "readable, not raw JSON"
    assert any(" INFO  POST /api/orders 201 in " in line for line in lines), logs.stdout

    stopped = cli(plain, "down")
    outputs.append(stopped.stdout + stopped.stderr)
    assert "api-gateway: stopped" in stopped.stdout and "jaeger: stopped" in stopped.stdout
    assert not list(run.glob("*.pid")) and not (run / "ports.json").exists()
    logged = "".join(path.read_text(errors="replace") for path in (run / "logs").glob("*.log"))
    assert token not in logged and not any(token in output for output in outputs), (
        "the admin token is never printed or logged"
    )
