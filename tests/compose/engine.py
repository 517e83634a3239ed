"""A real Docker engine and one Compose project of the stack, for the compose tier.

:class:`DockerEngine` uses the engine that answers ``docker info``, or starts ``dockerd`` (as
root) and stops it again; :class:`ComposeProject` runs ``docker compose`` in the repository
with the project's own name and free loopback ports for the three published ports (the compose
file reads them from ``GATEWAY_PORT``, ``JAEGER_QUERY_PORT`` and ``PROMETHEUS_PORT``).
``scripts/install_backends.sh --docker`` installs the engine and the compose and buildx
plugins; ``docker/stand-ins/build.sh`` provides the third-party images where no registry can
be reached.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackctl.ports import Ports, PortUrls

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "scripts/install_backends.sh --docker"
DOCKERD = "/usr/sbin/dockerd"


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """``docker <args>``; a failure raises with the command's output, so it names its cause."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}"
            f"\n{result.stderr[-3000:]}"
        )
    return result


@dataclass
class DockerEngine:
    """The engine the tier talks to; ``started`` is the dockerd this process started, if any."""

    log: Path
    started: subprocess.Popen | None = None

    def answers(self) -> bool:
        probe = docker("info", "--format", "{{.ServerVersion}}", timeout=20, check=False)
        return probe.returncode == 0

    def ensure(self, timeout: float = 60) -> None:
        assert shutil.which("docker"), f"no docker CLI on PATH: run {INSTALL_HINT}"
        if self.answers():
            return
        assert Path(DOCKERD).exists(), f"no engine answers, {DOCKERD} is missing: {INSTALL_HINT}"
        assert os.geteuid() == 0, "no Docker engine answers, and starting dockerd needs root"
        with self.log.open("wb") as out:
            self.started = subprocess.Popen(
                [DOCKERD], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.started.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                self.stop()
                raise AssertionError(f"dockerd did not come up ({self.log}):\n{tail}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the dockerd this process started (containers are gone by then)."""
        if self.started is None or self.started.poll() is not None:
            return
        self.started.send_signal(signal.SIGTERM)
        try:
            self.started.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.started.kill()
            self.started.wait(timeout=10)


@dataclass
class ComposeProject(PortUrls):
    """``docker compose`` on docker-compose.yml as ``name``, with free published ports."""

    name: str
    ports: Ports = field(default_factory=Ports.free)
    extra_env: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.name,
            "GATEWAY_PORT": str(self.ports.gateway),
            "JAEGER_QUERY_PORT": str(self.ports.jaeger_query),
            "PROMETHEUS_PORT": str(self.ports.prometheus),
            **self.extra_env,
        }

    def run(self, argv: list[str], timeout: float = 300, check: bool = True) -> str:
        """Run ``argv`` (a ``docker compose ...`` command) in the repository root, timed."""
        started = time.monotonic()
        result = subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        self.timings.setdefault(" ".join(argv[2:]), time.monotonic() - started)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-4000:]}\n"
                f"{result.stderr[-4000:]}\n{self.compose('ps', '-a', check=False)}"
            )
        return result.stdout

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        return self.run(["docker", "compose", *args], timeout=timeout, check=check)

    def container_ids(self) -> dict[str, str]:
        """Service name -> id of its container (running or not)."""
        ids = {}
        for line in self.compose("ps", "-a", "--format", "json").splitlines():
            for entry in json.loads(line) if line.startswith("[") else [json.loads(line)]:
                ids[entry["Service"]] = entry["ID"]
        return ids

    def inspect(self) -> dict[str, dict[str, Any]]:
        """Service name -> ``docker inspect`` of its container."""
        ids = self.container_ids()
        data = json.loads(docker("inspect", *ids.values()).stdout)
        by_id = {entry["Id"]: entry for entry in data}
        return {
            service: next(v for k, v in by_id.items() if k.startswith(cid))
            for service, cid in ids.items()
        }

    def volumes(self) -> set[str]:
        out = docker(
            "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={self.name}"
        ).stdout
        return set(out.split())
