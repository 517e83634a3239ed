"""One compose stack for the compose tier, on a real Docker engine.

The engine is the one that answers, or a ``dockerd`` started here. Both fixtures are
module-scoped: the stack is removed, and a dockerd started here stopped, before the next tier
runs, whether the tests passed or not.
Third-party images the engine lacks are built as stand-ins (docker/stand-ins/build.sh), then the
stack is started with the README's own ``docker compose up`` command under the project name
below, on free loopback ports, and removed with its volumes at the end. A failing test gets the
last lines of every container's log in its report.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.compose.engine import ROOT, ComposeProject, DockerEngine

PROJECT = "otel-order-stack-compose-test"
# The database password compose requires (a new one each run: the volume is removed at the end).
POSTGRES_PASSWORD = secrets.token_hex(16)
# The spanmetrics connector's flush (15 s by default) would make the metrics checks wait.
ENV = {"OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s", "POSTGRES_PASSWORD": POSTGRES_PASSWORD}
README = ROOT / "README.md"


def readme_docker_commands() -> list[str]:
    """The shell commands of the README's "Run it with Docker" block, continuations joined and
    comments dropped."""
    section = README.read_text().split("## Run it with Docker", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README: the Docker section has no sh block"
    commands = []
    for line in block[1].replace("\\\n", " ").splitlines():
        command = line.split("  #", 1)[0].strip()
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def readme_command(prefix: str) -> str:
    [command] = [c for c in readme_docker_commands() if c.startswith(prefix)]
    return command


def readme_order() -> dict[str, Any]:
    """The order body the README's curl sends."""
    return json.loads(readme_command("curl ").split(" -d ", 1)[1].strip("'"))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    engine = DockerEngine(log=tmp_path_factory.mktemp("dockerd") / "dockerd.log")
    engine.ensure()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def stack(engine: DockerEngine) -> Iterator[ComposeProject]:
    project = ComposeProject(PROJECT, extra_env=ENV)
    project.compose("down", "-v", "--remove-orphans", check=False)  # a previous run's leftovers
    started = time.monotonic()
    subprocess.run([str(ROOT / "docker" / "stand-ins" / "build.sh")], check=True, timeout=900)
    project.timings["stand-ins"] = time.monotonic() - started
    try:
        try:
            project.run(shlex.split(readme_command("docker compose up")), timeout=1200)
        except AssertionError as exc:  # name the cause: what the containers said
            logs = project.compose("logs", "--no-color", "--tail", "10", check=False)
            raise AssertionError(f"{exc}\n--- docker compose logs --tail 10 ---\n{logs}") from None
        yield project
    finally:
        project.compose("down", "-v", "--remove-orphans", timeout=180, check=False)
        # images a rebuild left untagged (~0.5 GB each); the tagged ones stay as the cache
        label = f"label=com.docker.compose.project={PROJECT}"
        subprocess.run(["docker", "image", "prune", "-f", "--filter", label], check=False)
        STACKS.append(project)


STACKS: list[ComposeProject] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    project = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(project, ComposeProject):
        logs = project.compose("logs", "--no-color", "--tail", "15", check=False, timeout=60)
        report.sections.append(("docker compose logs --tail 15", logs))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for project in STACKS:
        timings = ", ".join(
            f"{' '.join(k.split()[:4])}: {v:.0f} s" for k, v in project.timings.items() if v >= 1
        )
        terminalreporter.write_line(f"compose tier ({project.name}) timings: {timings}")
