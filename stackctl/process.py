"""One managed process: started detached, tracked by a pid file, stopped with SIGTERM.

The pid file also records the process start time (from /proc), so a stale file whose pid the
kernel has since given to another program is never mistaken for ours, and never signalled.

A process inherits the caller's environment, less every secret variable
(:data:`servicekit.catalog.SECRET_VARIABLES`) it is not named as reading: Jaeger, the collector
or the trace browser never get ``ADMIN_TOKEN``, wherever it was set.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from servicekit.catalog import SECRET_VARIABLES


class StartError(RuntimeError):
    """A process exited or never became healthy, or a port it needs is taken; the message names
    the process and its log file, or the port, its owner and the variable that moves it."""


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Split after the command name, which may contain spaces: then field 3 (state) comes first
    # and field 22 (starttime) is the 20th. An exited, unreaped child (zombie) counts as gone.
    after_name = stat.rsplit(")", 1)[1].split()
    return None if after_name[0] in ("Z", "X") else after_name[19]


def live_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process still runs (same start time), else None; a stale
    file is removed."""
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if _start_time(pid) == started:
        return pid
    pid_file.unlink(missing_ok=True)
    return None


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    health_url: str
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)  # the TCP ports it listens on, by *_PORT
    sockets: list[Path] = field(default_factory=list)  # the Unix sockets it listens on
    secrets: tuple[str, ...] = ()  # the secret variables it reads (SECRET_VARIABLES)

    def environment(self) -> dict[str, str]:
        """What the process starts with: ours and ``env`` over it, without the secrets it does
        not read."""
        withheld = set(SECRET_VARIABLES) - set(self.secrets)
        return {k: v for k, v in {**os.environ, **self.env}.items() if k not in withheld}

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "logs" / f"{self.name}.log"

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the log ("" when there is none yet)."""
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def pid(self) -> int | None:
        """Our live process's pid, or None (a stale pid file is removed)."""
        return live_pid(self.pid_file)

    def healthy(self) -> bool:
        """A 2xx from ``health_url``; for ``tcp://host:port`` (Kafka has no HTTP), a connect."""
        if self.health_url.startswith("tcp://"):
            host, port = self.health_url.removeprefix("tcp://").rsplit(":", 1)
            try:
                socket.create_connection((host, int(port)), timeout=1.0).close()
                return True
            except OSError:
                return False
        try:
            return httpx.get(self.health_url, timeout=1.0).is_success
        except httpx.HTTPError:
            return False

    def start(self) -> None:
        """Start detached. Refused when something else already answers our health URL: it would
        be taken for this process once started (a stack from another directory, say)."""
        if self.healthy():
            raise StartError(
                f"{self.name}: another process already answers at {self.health_url}; stop it, "
                "or choose other ports with the *_PORT variables"
            )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        for path in self.sockets:  # one a killed run left would make the bind fail
            path.unlink(missing_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives `make up` returning; Ctrl-C does not reach it
            )
        started = None
        while started is None and proc.poll() is None:
            started = _start_time(proc.pid)
        self.pid_file.write_text(f"{proc.pid} {started}\n")

    def wait_healthy(self, deadline: float) -> None:
        """Poll the health endpoint until it answers 2xx, the process dies, or time runs out."""
        while True:
            # Alive first: if our process died (say, its port was taken), a healthy answer on
            # that port comes from someone else's process.
            if self.pid() is None:
                raise StartError(f"{self.name} exited during start-up; see {self.log_file}")
            if self.healthy():
                return
            if time.monotonic() > deadline:
                raise StartError(
                    f"{self.name} not healthy at {self.health_url} in time; see {self.log_file}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM (graceful: services flush spans), then SIGKILL after ``timeout``."""
        pid = self.pid()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            _reap(pid)
            time.sleep(0.1)
        if self.pid() is not None:
            os.killpg(pid, signal.SIGKILL)
            while self.pid() is not None:
                _reap(pid)
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL at once: for tests of a crashed backend or service."""
        pid = self.pid()
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            while self.pid() is not None:
                _reap(pid)
                time.sleep(0.05)
            self.pid_file.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    """Collect our own exited child (tests start processes from this interpreter)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
