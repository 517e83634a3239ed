"""Hostile input: schemathesis against the gateway's own OpenAPI schema.

Over 1,000 generated requests (valid and invalid) must produce no 5xx and only responses the
schema documents. The gateway is served by a real uvicorn server on a free loopback port and
wired in process to the real downstream apps, so a case that passes validation runs the whole
order flow.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from tests.unit.conftest import build_stack


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway under a real uvicorn on a free loopback port, started when a test needs it
    (never at import: collecting the tests starts nothing)."""
    app = build_stack(tmp_path_factory.mktemp("fuzz")).apps["api-gateway"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "fuzz target did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_gateway_survives_generated_requests(gateway_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        def survives(case: schemathesis.Case) -> None:
            # A schema-valid order may still be refused by the domain (unknown sku, out of
            # stock, a reused Idempotency-Key), so "valid input is accepted" is not a property
            # of this API.
            case.call_and_validate(base_url=gateway_url, excluded_checks=[positive_data_acceptance])

        try:
            survives()
        except Exception as exc:
            exc.add_note(f"operation: {operation.label}")
            raise
