"""The scale-out tier: Jaeger on a real OpenSearch node, the agent and gateway collector tiers.

Every process is the real binary (scripts/install_backends.sh --test-tools builds or fetches
them) on free loopback ports, with data and logs in a temporary directory; a failing test gets
the tail of each process's log in its report. See docs/scale-out.md.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from servicekit.catalog import SERVICE_NAMES
from stackctl.traces import wait_for_trace
from tests.order_trace_contract import SQLITE, check_order_trace, from_jaeger
from tests.process_logs import pytest_runtest_makereport  # noqa: F401 (registers the hook)


def send_trace(
    otlp_port: int,
    duration_ms: int = 20,
    status: int = 201,
    error: bool = False,
    start_ns: int | None = None,
    **attrs: Any,
) -> str:
    """A gateway server span with one inventory child, sent over OTLP/gRPC; its trace id.

    Timestamps are explicit, so a "slow" or an old trace costs no waiting.
    """
    provider = TracerProvider(resource=Resource({"service.name": "api-gateway"}))
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{otlp_port}", insecure=True)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("scale-out-test")
    start = time.time_ns() if start_ns is None else start_ns
    root = tracer.start_span(
        "POST /api/orders",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={"http.response.status_code": status, **attrs},
    )
    if error:
        root.set_status(Status(StatusCode.ERROR, "out of stock"))
    with trace.use_span(root):
        child = tracer.start_span("POST /inventory/reserve", start_time=start + 1_000_000)
        child.end(end_time=start + 2_000_000)
    root.end(end_time=start + duration_ms * 1_000_000)
    provider.shutdown()
    return format(root.get_span_context().trace_id, "032x")


@contextmanager
def reachable_dir(request: pytest.FixtureRequest, prefix: str) -> Iterator[Path]:
    """A directory for a stack with OpenSearch, whose own user must enter it (pytest's
    temporary directories are private to root). Removed after a module whose tests all passed;
    otherwise its data goes and its logs (``run/logs``) stay for the failure."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    failed, passed = request.session.testsfailed, False
    try:
        yield base
        passed = request.session.testsfailed == failed
    finally:
        shutil.rmtree(base if passed else base / "data", ignore_errors=True)


def wait_for_order_trace(
    jaeger_url: str, trace_id: str, order_id: str, timeout: float, db_system: str = SQLITE
) -> None:
    """Poll until the order's trace is whole by the order trace contract, all 15 spans: a leaf
    span (a database statement) can be stored a moment after the rest, and a missing leaf
    leaves no orphan for ``wait_for_trace`` to see. Raises the contract's last failure.
    ``db_system``: the services' store, as the database spans name it."""
    deadline = time.monotonic() + timeout
    operations = frozenset({"process_order", "send_notification"})
    while True:
        left = max(deadline - time.monotonic(), 1)
        trace = wait_for_trace(jaeger_url, trace_id, set(SERVICE_NAMES), operations, left)
        try:
            check_order_trace(from_jaeger(trace), order_id, 1, db_system)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
