"""One real stack for the whole e2e session: Jaeger, the collector and the four services.

They are the binaries and processes `make up` runs (stackctl), on free loopback ports, with
their data and logs in a temporary directory. A failing test gets the tail of every process's
log in its report; the full logs stay in the directory printed there.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from stackctl.ports import Ports
from stackctl.stack import Stack
from tests.process_logs import pytest_runtest_makereport  # noqa: F401 (registers the hook)

ADMIN_TOKEN = "e2e-admin-token"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("stack")
    stack = Stack(
        run_dir=base / "run",
        data_dir=base / "data",
        ports=Ports.free(),
        env={
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "FAULT_SEED": "7",
            "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
        },
        with_prometheus=False,
    )
    try:
        stack.up(timeout=120, report=lambda line: None)
        yield stack
    finally:
        stack.down(report=lambda line: None)


@pytest.fixture
def gateway(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        yield client
