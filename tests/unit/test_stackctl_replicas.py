"""`make up DB=postgres REPLICAS=N`, without starting the stack: replicas are refused with
SQLite and say why; each replica has its own port, log and data directory, recorded by `up` and
found again by the commands after it; HAProxy's config retries only where nothing was sent
(that Debian's haproxy accepts it is checked in tests/replicas/test_balancer.py, where the tier
installs it); the database URL (a secret) reaches the services only. The running stack is tested
in tests/replicas/."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from servicekit.catalog import SECRET_VARIABLES, SERVICE_NAMES, SERVICES
from stackctl import haproxy, postgres
from stackctl.ports import Ports
from stackctl.process import StartError
from stackctl.run_as import check_reachable
from stackctl.stack import REPLICA_PORT, Stack, local_stack
from tests.unit.test_stackctl_local import running_stack

POSTGRES_URL = "postgresql://someone:secret@127.0.0.1:5432/somewhere"


def replicated(tmp_path: Path, replicas: int = 3, **kwargs) -> Stack:
    return Stack(
        tmp_path / "run",
        tmp_path / "data",
        ports=Ports.free(),
        database="postgres",
        replicas=replicas,
        **kwargs,
    )


@pytest.mark.parametrize("replicas", [2, 5])
def test_replicas_on_sqlite_are_refused_saying_why(tmp_path: Path, replicas: int) -> None:
    with pytest.raises(ValueError) as error:
        Stack(tmp_path / "run", tmp_path / "data", ports=Ports.free(), replicas=replicas)
    message = str(error.value)
    assert f"REPLICAS={replicas} needs a database the replicas share" in message
    assert "oversold" in message
    assert f"make up DB=postgres REPLICAS={replicas}" in message


def test_replicas_on_a_given_postgresql_are_allowed(tmp_path: Path) -> None:
    stack = Stack(
        tmp_path / "run",
        tmp_path / "data",
        ports=Ports.free(),
        replicas=2,
        env={"DATABASE_URL": POSTGRES_URL},
    )
    assert "postgres" not in [proc.name for proc in stack.processes], "none of ours started"
    assert stack.database_url == POSTGRES_URL


@pytest.mark.parametrize("replicas", ["0", "-1", "two"])
def test_a_wrong_replica_count_is_an_error(tmp_path: Path, replicas: str) -> None:
    env = {"RUN_DIR": str(tmp_path / "run"), "DB": "postgres", "REPLICAS": replicas}
    with pytest.raises(ValueError, match="REPLICAS="):
        local_stack(env)


def test_each_replica_has_its_own_port_log_and_data(tmp_path: Path) -> None:
    stack = replicated(tmp_path, replicas=3)
    replicas = [proc for procs in stack.replica_processes.values() for proc in procs]
    assert [proc.name for proc in stack.replica_processes["api-gateway"]] == [
        "api-gateway-1",
        "api-gateway-2",
        "api-gateway-3",
    ]
    assert len(replicas) == 3 * len(SERVICES)
    ports = [proc.ports[REPLICA_PORT] for proc in replicas]
    usual = {getattr(stack.ports, field) for field in vars(stack.ports)}
    assert len(set(ports)) == len(ports) and not set(ports) & usual
    assert len({proc.log_file for proc in replicas}) == len(replicas)
    assert len({proc.env["DATA_DIR"] for proc in replicas}) == len(replicas)
    for proc in replicas:
        service = proc.name.rsplit("-", 1)[0]
        spec = next(spec for spec in SERVICES if spec.name == service)
        assert proc.env[spec.port_variable] == str(proc.ports[REPLICA_PORT])
        # every call to another service goes through the balancer, on the usual ports
        assert proc.env["INVENTORY_URL"] == f"http://127.0.0.1:{stack.ports.inventory}"
        assert proc.env["ORDER_URL"] == f"http://127.0.0.1:{stack.ports.order}"
    assert stack.service_url("api-gateway") == stack.gateway_url
    assert stack.process("haproxy").ports == {
        spec.port_variable: stack.ports.of(spec) for spec in SERVICES
    }


def test_every_port_of_a_replicated_stack_is_checked_once(tmp_path: Path) -> None:
    stack = replicated(tmp_path, replicas=2)
    checked = [port for proc in stack.processes for port in proc.ports.values()]
    assert len(checked) == len(set(checked))
    assert stack.ports.postgres in checked
    for ports in stack.replica_ports.values():
        assert set(ports) <= set(checked)


def test_the_commands_after_up_find_the_replicas_it_recorded(tmp_path: Path) -> None:
    stack = replicated(tmp_path, replicas=3)
    sleeper = running_stack(tmp_path, stack.ports)
    stack.ports.save(stack.ports_file, stack.replica_ports)
    env = {"RUN_DIR": str(tmp_path / "run"), "DATA_DIR": str(tmp_path / "data")}
    # PostgreSQL runs from this run directory: the same live process stands in for it
    (tmp_path / "run" / "postgres.pid").write_text(
        (tmp_path / "run" / "api-gateway.pid").read_text()
    )
    try:
        found = local_stack(env)  # neither DB nor REPLICAS: both are read back
        assert found.database == "postgres"
        assert found.replicas == 3
        assert found.replica_ports == stack.replica_ports
        assert Ports.load(stack.ports_file) == stack.ports, "the replicas do not spoil the record"
        assert found.moved == []
        asked = local_stack({**env, "REPLICAS": "5"})
        assert asked.replicas == 3, "a running stack is not rescaled under its feet"
        assert asked.moved == ["REPLICAS=5 (it runs 3 of each service)"]
        names = {proc.name for proc in found.processes}
        assert {"postgres", "haproxy", "api-gateway-3", "inventory-service-1"} <= names
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_taken_replica_port_says_up_draws_others(tmp_path: Path) -> None:
    stack = replicated(tmp_path, replicas=2)
    port = stack.replica_ports["order-service"][1]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(StartError) as error:
            stack.check_ports(stack.processes)
    message = str(error.value)
    assert f"port {port} ({REPLICA_PORT}, for order-service-2)" in message
    assert "draws other free ports" in message


def test_haproxy_retries_only_what_was_never_sent(tmp_path: Path) -> None:
    stack = replicated(tmp_path, replicas=2)
    fronts = {
        spec.name: (stack.ports.of(spec), stack.replica_ports[spec.name]) for spec in SERVICES
    }
    config = haproxy.render(stack.run_dir, fronts)
    directives = [line.strip() for line in config.splitlines()]
    assert [d for d in directives if d.startswith("retry-on")] == ["retry-on conn-failure"]
    assert "option redispatch" in directives
    assert "option http-server-close" in directives
    assert "option httpchk GET /readyz" in directives
    assert not [d for d in directives if "forwardfor" in d or d.startswith("http-request set")]
    for spec in SERVICES:
        assert f"bind 127.0.0.1:{stack.ports.of(spec)}" in directives
        for k, port in enumerate(stack.replica_ports[spec.name], start=1):
            assert f"server {spec.name}-{k} 127.0.0.1:{port}" in directives


def test_the_database_url_reaches_the_services_only(tmp_path: Path) -> None:
    stack = replicated(tmp_path, replicas=2)
    url = stack.database_url
    assert url.startswith("postgresql://order_stack:") and f":{stack.ports.postgres}/" in url
    for proc in stack.processes:
        env = proc.environment()
        if proc.name.rsplit("-", 1)[0] in SERVICE_NAMES:
            assert env["DATABASE_URL"] == url, proc.name
        else:
            assert not [var for var in SECRET_VARIABLES if var in env], proc.name
            assert stack.postgres_password not in " ".join(proc.argv), proc.name


def test_the_password_is_kept_for_its_owner_only(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = postgres.password(run)
    assert not postgres.password_file(run).exists(), "status and logs keep none"
    postgres.keep_password(run, first)
    assert postgres.password_file(run).stat().st_mode & 0o077 == 0
    assert postgres.password(run) == first, "the next up and the services get the same"
    assert Stack(run, tmp_path / "data", database="postgres").postgres_password == first


def test_haproxys_own_errors_are_problems(tmp_path: Path) -> None:
    haproxy.write_error_files(tmp_path)
    for status in (502, 503, 504):
        raw = haproxy.error_file(tmp_path, status).read_bytes()
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0].startswith(f"HTTP/1.1 {status} ")
        fields = dict(line.split(": ", 1) for line in lines[1:])
        assert fields["Content-Type"] == "application/problem+json"
        assert int(fields["Content-Length"]) == len(body)
        problem = json.loads(body)
        assert problem["status"] == status and problem["title"] and problem["detail"]
    assert b"Retry-After: 1\r\n" in haproxy.error_file(tmp_path, 503).read_bytes()


def test_make_up_refuses_replicas_on_sqlite_before_starting_anything(tmp_path: Path) -> None:
    env = {**os.environ, "RUN_DIR": str(tmp_path / "run"), "DATA_DIR": str(tmp_path / "data")}
    env |= {"REPLICAS": "2", "DB": "sqlite"}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "stackctl", "up"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "REPLICAS=2 needs a database the replicas share" in " ".join(done.stdout.split())
    assert not list((tmp_path / "run").glob("*.pid"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the backends change user only when run as root")
def test_a_backend_user_that_cannot_enter_the_directories_is_refused_by_name() -> None:
    base = Path(tempfile.mkdtemp(prefix="run-as-"))
    try:
        base.chmod(0o755)
        (base / "open" / "data").mkdir(parents=True)
        check_reachable(base / "open" / "data", "postgres", "PostgreSQL")  # no error
        private = base / "private"
        (private / "data").mkdir(parents=True)
        private.chmod(0o700)
        with pytest.raises(RuntimeError) as error:
            check_reachable(private / "data", "postgres", "PostgreSQL")
        assert f"PostgreSQL runs as the user 'postgres', which cannot enter {private}" in str(
            error.value
        )
    finally:
        shutil.rmtree(base)
