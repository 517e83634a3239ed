"""Hostile input: schemathesis against the gateway's own OpenAPI schema.

Over 1,000 generated requests (valid and invalid) must produce no 5xx and only responses the
schema documents. The gateway is served by a real uvicorn server on a free loopback port and
wired in process to the real downstream apps, so a case that passes validation runs the whole
order flow.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from tests.unit.conftest import build_stack


def _serve_in_thread() -> str:
    app = build_stack(Path(tempfile.mkdtemp(prefix="fuzz-"))).apps["api-gateway"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "fuzz target did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}"


BASE_URL = _serve_in_thread()
schema = schemathesis.openapi.from_url(f"{BASE_URL}/openapi.json")


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_gateway_survives_generated_requests(case: schemathesis.Case) -> None:
    # A schema-valid order may still be refused by the domain (unknown sku, out of stock,
    # a reused Idempotency-Key), so "valid input is accepted" is not a property of this API.
    case.call_and_validate(base_url=BASE_URL, excluded_checks=[positive_data_acceptance])
