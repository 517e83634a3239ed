"""Real stacks for the reliability tests: Jaeger, the collector and the four services.

A test that breaks a stack (kills the collector, Jaeger or a service) gets a stack of its own,
started by :class:`StackFactory` for its module; the non-destructive tests (hostile input,
exposure, the leak scan) share one session stack. Every stack runs on free loopback ports with
its data and logs in a temporary directory. Before a stack is stopped, every trace Jaeger holds
is saved next to its logs, so the telemetry-leak test (run last) scans the whole run.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from stackctl.ports import Ports
from stackctl.stack import Stack
from tests.process_logs import pytest_runtest_makereport  # noqa: F401 (registers the hook)
from tests.reliability.support import SERVICES

ADMIN_TOKEN = f"rel-admin-{secrets.token_hex(8)}"
# Every Authorization value a test sends: none of them may show up in a span or a log line.
SENT_SECRETS: set[str] = {ADMIN_TOKEN}
LEAK_TEST_MODULE = "test_telemetry_leaks.py"


@dataclass
class Harvest:
    """What one stack left behind: its log files and every trace Jaeger had at the end."""

    name: str
    logs: list[Path]
    traces_file: Path | None = None
    error: str | None = None


@dataclass
class StackFactory:
    tmp: pytest.TempPathFactory
    stacks: list[Stack] = field(default_factory=list)
    harvests: dict[str, Harvest] = field(default_factory=dict)

    def start(self, name: str, env: dict[str, str] | None = None) -> Stack:
        """A new stack, up and healthy, with ``env`` for all its processes."""
        base = self.tmp.mktemp(name)
        stack = Stack(
            run_dir=base / "run",
            data_dir=base / "data",
            ports=Ports.free(),
            env={"FAULT_SEED": "7", **(env or {})},
            with_prometheus=False,
            with_browser=False,
        )
        self.stacks.append(stack)
        try:
            stack.up(timeout=120, report=lambda line: None)
        except BaseException:
            stack.down(report=lambda line: None)
            raise
        return stack

    @contextmanager
    def running(self, name: str, env: dict[str, str] | None = None) -> Iterator[Stack]:
        """A stack of :meth:`start` for the ``with`` block, harvested and stopped after it."""
        stack = self.start(name, env)
        try:
            yield stack
        finally:
            self.stop(stack)

    def harvest(self, stack: Stack) -> Harvest:
        """Save every trace in the stack's Jaeger (bringing back any process a test left down)."""
        name = stack.run_dir.parent.name
        harvest = Harvest(name, sorted((stack.run_dir / "logs").glob("*.log")))
        try:
            stack.up(timeout=60, report=lambda line: None)
            traces = all_traces(stack.jaeger_url)
            harvest.traces_file = stack.run_dir.parent / "jaeger-traces.json"
            harvest.traces_file.write_text(json.dumps(traces))
        except Exception as exc:  # reported by the leak test, which then fails
            harvest.error = f"{type(exc).__name__}: {exc}"
        self.harvests[name] = harvest
        return harvest

    def stop(self, stack: Stack) -> None:
        try:
            self.harvest(stack)
        finally:
            stack.down(report=lambda line: None)


def all_traces(jaeger_url: str, lookback_hours: float = 6) -> list[dict[str, Any]]:
    """Every trace Jaeger stores for the four services, each once."""
    end = int(time.time() * 1_000_000)
    start = end - int(lookback_hours * 3600 * 1_000_000)
    traces: dict[str, dict[str, Any]] = {}
    for service in SERVICES:
        response = httpx.get(
            f"{jaeger_url}/api/traces",
            params={"service": service, "start": start, "end": end, "limit": 1_000_000},
            timeout=60,
        )
        response.raise_for_status()
        for trace in response.json().get("data") or []:
            traces[trace["traceID"]] = trace
    return list(traces.values())


@pytest.fixture(scope="session")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackFactory]:
    factory = StackFactory(tmp_path_factory)
    try:
        yield factory
    finally:
        for stack in factory.stacks:
            stack.down(report=lambda line: None)


@pytest.fixture(scope="session")
def shared_stack(stacks: StackFactory) -> Iterator[Stack]:
    """One stack for the tests that break nothing: concurrency (on skus no other test buys),
    hostile input, exposure with a token, and the leak scan's own traffic."""
    # 500 orders at once queue on two cores: a downstream timeout well above that queueing
    # keeps a busy machine from turning it into 504s, which the concurrency tests do not test
    # (timeouts are tested on stacks of their own).
    env = {"ADMIN_TOKEN": ADMIN_TOKEN, "DOWNSTREAM_TIMEOUT_SECONDS": "30"}
    with stacks.running("shared", env) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    """A client of the gateway of the module's own ``stack`` fixture."""
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
        yield client


# --- measured numbers, printed at the end of the run (docs/reliability.md quotes them) ------

RESULTS: list[tuple[str, dict[str, Any]]] = []


def record(scenario: str, **numbers: Any) -> None:
    RESULTS.append((scenario, numbers))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("reliability: measured")
    for scenario, numbers in RESULTS:
        terminalreporter.write_line(f"{scenario}: {json.dumps(numbers, sort_keys=True)}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The leak scan covers every stack of the run, so it runs after every other test."""
    last = [item for item in items if item.path.name == LEAK_TEST_MODULE]
    items[:] = [item for item in items if item.path.name != LEAK_TEST_MODULE] + last
