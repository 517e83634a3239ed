"""A throwaway PostgreSQL cluster for tests, from Debian's binaries (``postgresql`` package,
installed by ``scripts/install_backends.sh --postgres``).

:func:`postgres_cluster` initialises a cluster in a temporary directory, starts ``postgres`` on
a free loopback port (its unix socket in that directory too), yields a :class:`Cluster`, then
stops it (fast shutdown) and removes the directory. Run as root, ``initdb`` and ``postgres``
run as the ``postgres`` user (they refuse root), through ``setpriv``. The cluster has a user
with a password (scram-sha-256 over TCP), so tests can check the password never leaks.

The session-scoped fixture :func:`postgres` is the one cluster of a test session; import it
into a conftest (``from tests.postgres import postgres``) and use :meth:`Cluster.new_database`
for a fresh database per test.
"""

from __future__ import annotations

import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

POSTGRES_LIB = Path("/usr/lib/postgresql")
USER = "stack"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0


def postgres_bin() -> Path:
    """The newest installed major version's ``bin`` directory; raises with the install hint."""
    found = sorted(POSTGRES_LIB.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL: run scripts/install_backends.sh --postgres")
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    host: str
    port: int
    password: str
    socket_dir: Path
    _names: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str = "postgres") -> str:
        """``postgresql://stack:<password>@127.0.0.1:<port>/<database>``."""
        return f"postgresql://{USER}:{self.password}@{self.host}:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database: its ``DATABASE_URL``."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        return self.url(name)


def _as_postgres_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *command]


@contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    """Start a cluster; yield it; stop it and remove its files, whatever happened."""
    binaries = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="pg-test-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
        password = secrets.token_urlsafe(16)
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        subprocess.run(
            _as_postgres_user(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(root / "data"),
                    "-U",
                    USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        port = free_port()
        process = subprocess.Popen(
            _as_postgres_user(
                [
                    str(binaries / "postgres"),
                    "-D",
                    str(root / "data"),
                    "-p",
                    str(port),
                    "-k",
                    str(root),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",  # a throwaway cluster: durability is not under test
                    "-c",
                    "max_connections=200",
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=open(root / "postgres.log", "wb"),  # noqa: SIM115 (closed with the process)
        )
        cluster = Cluster("127.0.0.1", port, password, root)
        _wait_ready(cluster, process, root)
        yield cluster
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(cluster: Cluster, process: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited: {(root / 'postgres.log').read_text()[-2000:]}")
        try:
            with psycopg.connect(cluster.url(), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """The session's PostgreSQL cluster."""
    with postgres_cluster() as cluster:
        yield cluster
