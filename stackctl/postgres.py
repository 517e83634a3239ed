"""PostgreSQL for `make up DB=postgres` and the replicas tier: one server, loopback only.

Debian's package (``scripts/install_backends.sh --postgres``) provides the binaries
(``/usr/lib/postgresql/<major>/bin``, the newest, or ``POSTGRES_BIN_DIR``); the server's state
lives in the stack's directories: the cluster in ``<data>/postgres`` (``initdb`` once), its Unix
socket in ``<run>/postgres/``, its log in ``<run>/logs/postgres.log``. As root it runs as the
``postgres`` user of Debian's package (:mod:`stackctl.run_as`).

Who may connect: over the Unix socket, the cluster's superuser only, by peer authentication
(the operating-system user that runs the server: ``postgres`` as root); over TCP, on
127.0.0.1 only, the stack's role ``order_stack`` with a password (SCRAM-SHA-256). The password is
drawn once and kept in ``<run>/postgres-password`` (mode 0600); each start sets it on the role
again, so a run directory made anew with the data kept still works. The services get it inside
``DATABASE_URL``, a secret variable no other process receives.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from secrets import token_urlsafe

from stackctl.run_as import as_user, check_reachable, own

USER = "postgres"  # Debian's package creates it
ROLE = DATABASE = "order_stack"
HINT = "run scripts/install_backends.sh --postgres"
# Connections the stack may open: each service process's pool, plus room for psql and the tests.
SPARE_CONNECTIONS = 20


def bin_dir() -> Path:
    """``POSTGRES_BIN_DIR``, else the newest ``/usr/lib/postgresql/<major>/bin`` (Debian's
    layout). Raises RuntimeError when there is none."""
    if configured := os.environ.get("POSTGRES_BIN_DIR"):
        return Path(configured)
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise RuntimeError(f"no PostgreSQL under /usr/lib/postgresql: {HINT}")
    return found[-1].parent


def socket_dir(run_dir: Path) -> Path:
    return run_dir / "postgres"


def password(run_dir: Path) -> str:
    """The stack role's password: the one kept in ``run_dir``, else a new one (kept by
    :func:`keep_password` when ``up`` starts the server)."""
    try:
        return password_file(run_dir).read_text().strip()
    except OSError:
        return token_urlsafe(24)


def password_file(run_dir: Path) -> Path:
    return run_dir / "postgres-password"


def keep_password(run_dir: Path, secret: str) -> None:
    """Keep it (mode 0600), so the services started later get the same."""
    file = password_file(run_dir)
    if not file.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")


def database_url(secret: str, port: int) -> str:
    """``postgresql://order_stack:<password>@127.0.0.1:<port>/order_stack``."""
    return f"postgresql://{ROLE}:{secret}@127.0.0.1:{port}/{DATABASE}"


def lay_out(run_dir: Path, data_dir: Path) -> None:
    """The socket directory, and the cluster in ``data_dir`` on the first start (``initdb``).
    Raises RuntimeError naming what is missing or unreachable."""
    binaries = bin_dir()
    sockets = socket_dir(run_dir)
    sockets.mkdir(parents=True, exist_ok=True)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    for path in (sockets, data_dir.parent):
        check_reachable(path, USER, "PostgreSQL")
    own(USER, HINT, sockets)
    if (data_dir / "PG_VERSION").exists():
        return
    data_dir.mkdir(mode=0o700, exist_ok=True)
    own(USER, HINT, data_dir)
    argv = [
        *as_user(USER, "PostgreSQL"),
        str(binaries / "initdb"),
        f"--pgdata={data_dir}",
        "--auth-local=peer",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C.UTF-8",
        "--no-instructions",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")


def command(run_dir: Path, data_dir: Path, port: int, max_connections: int) -> list[str]:
    """The argv that runs the server laid out by :func:`lay_out` in the foreground."""
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": port,
        "unix_socket_directories": socket_dir(run_dir),
        "max_connections": max_connections,
        # Its log is our log file (stderr); no statement text, so no password, is ever logged.
        "logging_collector": "off",
        "log_statement": "none",
        "log_min_error_statement": "panic",
    }
    argv = [*as_user(USER, "PostgreSQL"), str(bin_dir() / "postgres"), "-D", str(data_dir)]
    return argv + [f"--{key.replace('_', '-')}={value}" for key, value in settings.items()]


def max_connections(processes: int, pool_size: int) -> int:
    """Enough for ``processes`` service processes of ``pool_size`` connections each."""
    return max(100, processes * pool_size + SPARE_CONNECTIONS)


def provision(run_dir: Path, port: int, secret: str, timeout: float = 30.0) -> None:
    """Create the stack's role and database if missing and set the role's password ``secret``, as
    the superuser over the Unix socket, waiting (bounded) for the server to accept. The
    password goes through psql's standard input, never its argv. Raises RuntimeError."""
    script = (
        f"SELECT 'CREATE ROLE {ROLE} LOGIN' WHERE NOT EXISTS "
        f"(SELECT FROM pg_roles WHERE rolname = '{ROLE}') \\gexec\n"
        f"ALTER ROLE {ROLE} WITH LOGIN PASSWORD :'password';\n"
        f"SELECT 'CREATE DATABASE {DATABASE} OWNER {ROLE}' WHERE NOT EXISTS "
        f"(SELECT FROM pg_database WHERE datname = '{DATABASE}') \\gexec\n"
    )
    argv = [
        *as_user(USER, "PostgreSQL"),
        str(bin_dir() / "psql"),
        f"--host={socket_dir(run_dir)}",
        f"--port={port}",
        "--dbname=postgres",
        "--no-psqlrc",
        "--quiet",
        "--set=ON_ERROR_STOP=1",
    ]
    stdin = f"\\set password '{secret}'\n" + script
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, check=False, cwd="/"
        )
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL on port {port}: {done.stderr.strip()}")
        time.sleep(0.3)
