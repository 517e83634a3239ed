"""Request log lines are JSON with the trace and span ids of the request, and no PII."""

from __future__ import annotations

import json
import logging

import pytest

from servicekit.logs import configure_logging
from tests.unit.conftest import ORDER, InProcessStack

pytestmark = pytest.mark.anyio


async def test_request_logs_are_json_with_trace_ids(
    stack: InProcessStack, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("api-gateway", "INFO")
    try:
        response = await stack.client.post("/api/orders", json=ORDER)
        await stack.client.post("/api/orders", json={**ORDER, "email": "x@y"})
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    requests = [line for line in lines if line["message"] == "request"]
    assert len(requests) >= 5, "one line per request in each service"
    trace_id = response.json()["traceId"]
    mine = [line for line in requests if line["trace_id"] == trace_id]
    assert {line["http.route"] for line in mine} >= {"/api/orders", "/orders", "/notify"}
    assert all(len(line["span_id"]) == 16 for line in mine)
    assert all("@" not in json.dumps(line) for line in lines)
