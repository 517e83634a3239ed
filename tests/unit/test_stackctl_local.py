"""`make up` and the targets after it, without starting the stack: a taken port stops `up`
before anything starts and names the port, its owner and its variable; the ports `up` used are
recorded and found again by the commands that follow; the admin token it makes stays in a file
of its owner's; the installer is quiet and plain when piped and checks Go's version; log lines
are made readable; `status` never takes another stack's process for one of ours."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from stackctl.admin_token import admin_token, token_file
from stackctl.logview import readable
from stackctl.ports import Ports, port_in_use, port_owner
from stackctl.process import StartError, _start_time
from stackctl.stack import ROOT, Stack, local_stack

INSTALLER = ROOT / "scripts" / "install_backends.sh"


@pytest.fixture
def listener() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Another program listening on a free loopback port: (port, its process)."""
    port = Ports.free().gateway
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while not port_in_use(port):
        assert time.monotonic() < deadline, "http.server did not listen"
        time.sleep(0.05)
    yield port, proc
    proc.kill()
    proc.wait()


def test_a_taken_port_stops_up_before_anything_starts(
    tmp_path: Path, listener: tuple[int, subprocess.Popen[bytes]]
) -> None:
    port, holder = listener
    stack = Stack(tmp_path / "run", tmp_path / "data", ports=replace(Ports.free(), otlp_grpc=port))
    with pytest.raises(StartError) as error:
        stack.up(timeout=5, report=lambda line: None)
    message = str(error.value)
    owner = f"port {port} (OTLP_GRPC_PORT, for otel-collector) is in use by pid {holder.pid}"
    assert owner in message
    assert "http.server" in message, "the owner's command is named"
    assert "OTLP_GRPC_PORT=<free port> make up" in message
    assert message.startswith("nothing was started")
    assert not list((tmp_path / "run").glob("*.pid")), "not even Jaeger, which starts first"
    assert not stack.ports_file.exists()


def test_every_taken_port_is_named_at_once(tmp_path: Path) -> None:
    ports = Ports.free()
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", ports.gateway))
        a.listen()
        b.bind(("0.0.0.0", ports.jaeger_query))  # on every address: loopback is taken too
        b.listen()
        stack = Stack(tmp_path / "run", tmp_path / "data", ports=ports, with_prometheus=False)
        with pytest.raises(StartError) as error:
            stack.check_ports(stack.processes)
    message = str(error.value)
    assert f"port {ports.gateway} (GATEWAY_PORT, for api-gateway)" in message
    assert f"port {ports.jaeger_query} (JAEGER_QUERY_PORT, for jaeger-query-front)" in message
    assert f"in use by pid {os.getpid()} " in message


@pytest.mark.parametrize("storage", ["badger", "opensearch"])
def test_every_port_of_the_stack_is_checked(tmp_path: Path, storage: str) -> None:
    """Each field of Ports belongs to exactly one process, so none is started unchecked (the
    OpenSearch node's two ports only where it runs)."""
    stack = Stack(tmp_path / "run", tmp_path / "data", ports=Ports.free(), storage=storage)
    checked = [variable for proc in stack.processes for variable in proc.ports]
    expected = [Ports.variable(name) for name in vars(stack.ports)]
    if stack.prometheus_missing:
        expected.remove("PROMETHEUS_PORT")
    if storage != "opensearch":
        expected.remove("OPENSEARCH_PORT")
        expected.remove("OPENSEARCH_TRANSPORT_PORT")
    expected.remove("POSTGRES_PORT")  # DB=postgres only: tests/unit/test_stackctl_replicas.py
    assert sorted(checked) == sorted(expected)


def test_port_owner_is_none_for_a_free_port() -> None:
    port = Ports.free().gateway
    assert not port_in_use(port)
    assert port_owner(port) is None


def running_stack(tmp_path: Path, ports: Ports) -> subprocess.Popen[bytes]:
    """A run directory as `up` leaves it: the ports recorded, one live pid file."""
    run = tmp_path / "run"
    ports.save(run / "ports.json")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = None
    while started is None:
        started = _start_time(sleeper.pid)
    (run / "api-gateway.pid").write_text(f"{sleeper.pid} {started}\n")
    return sleeper


def test_the_commands_after_up_use_the_ports_it_recorded(tmp_path: Path) -> None:
    recorded = replace(Ports(), gateway=Ports.free().gateway)
    sleeper = running_stack(tmp_path, recorded)
    env = {"RUN_DIR": str(tmp_path / "run"), "DATA_DIR": str(tmp_path / "data")}
    try:
        stack = local_stack(env)
        assert stack.ports == recorded, "a plain `make status` finds the moved gateway"
        assert stack.gateway_url == f"http://127.0.0.1:{recorded.gateway}"
        assert stack.moved == []
        moved = local_stack({**env, "GATEWAY_PORT": "9999"})
        assert moved.ports == recorded, "a running stack is not moved under its feet"
        assert moved.moved == [f"GATEWAY_PORT=9999 (it runs on {recorded.gateway})"]
    finally:
        sleeper.kill()
        sleeper.wait()
    after = local_stack({**env, "GATEWAY_PORT": "9999"})
    assert after.ports.gateway == 9999, "once it stopped, the variables count again"


def test_up_records_its_ports_and_down_forgets_them(tmp_path: Path) -> None:
    ports = Ports.free()
    stack = Stack(tmp_path / "run", tmp_path / "data", ports=ports)
    ports.save(stack.ports_file)
    assert Ports.load(stack.ports_file) == ports
    stack.down(report=lambda line: None)
    assert not stack.ports_file.exists()
    assert Ports.load(stack.ports_file) is None
    stack.ports_file.write_text("{not json")
    assert Ports.load(stack.ports_file) is None, "a damaged record is ignored, not fatal"


def test_up_makes_an_admin_token_only_its_owner_can_read(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert admin_token(run, {}, create=False) is None, "status and logs make no token"
    assert not token_file(run).exists()
    token = admin_token(run, {}, create=True)
    assert token and len(token) >= 24
    assert token_file(run).stat().st_mode & 0o077 == 0
    assert admin_token(run, {}, create=True) == token, "kept for the demos and the next up"
    assert admin_token(run, {"ADMIN_TOKEN": "mine"}, create=True) == "mine"
    stack = local_stack({"RUN_DIR": str(run), "DATA_DIR": str(tmp_path / "data")}, starts=True)
    assert all(proc.env["ADMIN_TOKEN"] == token for proc in stack.processes)


def test_an_older_wider_token_file_is_narrowed(tmp_path: Path) -> None:
    path = token_file(tmp_path)
    path.write_text("")
    path.chmod(0o644)
    admin_token(tmp_path, {}, create=True)
    assert path.stat().st_mode & 0o077 == 0


def run_installer(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    return subprocess.run(
        [str(INSTALLER), *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_the_installer_is_silent_when_nothing_is_missing_and_plain_when_piped() -> None:
    run_installer("--python")  # in case uv.lock changed since this environment was made
    quiet = run_installer("--quiet", "--python")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == quiet.stderr == "", "make status/logs/demo print no install lines"
    said = run_installer("--python")
    assert said.stderr == "[install] Python environment: up to date (.venv)\n"
    assert "\x1b" not in said.stderr, "no escape codes when not on a terminal"


def test_an_old_go_is_refused_with_the_version_needed(tmp_path: Path) -> None:
    fake = tmp_path / "go"
    fake.write_text('#!/bin/sh\n[ "$1 $2" = "env GOVERSION" ] && echo go1.19.8\n')
    fake.chmod(0o755)
    result = run_installer("--check-go", path=f"{tmp_path}:{os.environ['PATH']}")
    assert result.returncode == 1
    need = next(
        line.split()[1]
        for line in (ROOT / "jaeger" / "build" / "go.mod").read_text().splitlines()
        if line.startswith("go ")
    )
    assert f"Go 1.19.8 is at {fake}" in result.stderr
    assert f"need Go >= {need}" in result.stderr
    assert "https://go.dev/dl/" in result.stderr


def test_a_missing_go_is_named(tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("bash", "sed", "sort", "head", "cat", "sha256sum", "cut", "dirname"):
        os.symlink(subprocess.check_output(["which", tool], text=True).strip(), bare / tool)
    result = run_installer("--check-go", path=str(bare))
    assert result.returncode == 1
    assert "Go is not installed" in result.stderr


def test_service_log_lines_are_readable() -> None:
    line = json.dumps(
        {
            "time": "2026-12-05 22:13:04,123",
            "level": "INFO",
            "logger": "servicekit.app",
            "message": "request",
            "service": "api-gateway",
            "trace_id": "4c0bda1cc6ab3ce6978383f7ba0c0e31",
            "span_id": "6b26f0cbedd5a08d",
            "http.request.method": "POST",
            "http.route": "/api/orders",
            "http.response.status_code": 201,
            "duration_ms": 420.78,
            "error.type": None,
        }
    )
    assert readable(line) == (
        "22:13:04.123 INFO  POST /api/orders 201 in 420.8 ms  "
        "trace_id=4c0bda1cc6ab3ce6978383f7ba0c0e31"
    )


def test_zap_lines_and_plain_lines() -> None:
    zap = json.dumps({"level": "warn", "ts": 1764972784.5, "msg": "retrying", "error": "EOF"})
    assert readable(zap) == "22:13:04.500 WARN  retrying  error=EOF"
    assert readable("Traceback (most recent call last):") == "Traceback (most recent call last):"
    uvicorn = json.dumps({"message": "Uvicorn running", "color_message": "\x1b[1mUvicorn\x1b[0m"})
    assert "\x1b" not in readable(uvicorn)
    assert readable("[1, 2]") == "[1, 2]"


def test_status_never_calls_another_stacks_gateway_ours(tmp_path: Path) -> None:
    """After `make down`, a gateway answering on the same port (another checkout's stack) is
    reported as such, not as this stack's healthy gateway; with our pid alive it is ours."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "readyz").write_text("ok")  # http.server answers 200 to GET /readyz
    port = Ports.free().gateway
    other = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=served,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not port_in_use(port):
            assert time.monotonic() < deadline, "http.server did not listen"
            time.sleep(0.05)
        ports = replace(Ports.free(), gateway=port)
        stack = Stack(tmp_path / "run", tmp_path / "data", ports=ports)
        rows = {name: (pid, state) for name, pid, state, _ in stack.status()}
        assert rows["api-gateway"] == (None, "down, another process answers")
        assert rows["order-service"] == (None, "down")
        sleeper = running_stack(tmp_path, ports)  # our pid file, a live process
        try:
            rows = {name: (pid, state) for name, pid, state, _ in stack.status()}
            assert rows["api-gateway"] == (sleeper.pid, "healthy")
        finally:
            sleeper.kill()
            sleeper.wait()
        assert dict((n, s) for n, _, s, _ in stack.status())["api-gateway"] != "healthy"
    finally:
        other.kill()
        other.wait()
