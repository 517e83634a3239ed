"""The database password (``DATABASE_URL``, a secret) is in no log line and no span, after
everything the tier did: orders, failures, replicas stopped and killed. Run last (by name)."""

from __future__ import annotations

import json
import time

import httpx

from servicekit.catalog import SERVICE_NAMES
from stackctl.stack import Stack


def test_the_database_password_is_in_no_log_and_no_span(stack: Stack) -> None:
    secret = stack.postgres_password
    assert secret and secret in (stack.database_url or "")
    logs = sorted((stack.run_dir / "logs").rglob("*.log"))
    assert len(logs) >= 2 * len(SERVICE_NAMES)
    assert [log.name for log in logs if secret in log.read_text(errors="replace")] == []
    end = int(time.time() * 1_000_000)
    spans = 0
    for service in SERVICE_NAMES:
        response = httpx.get(
            f"{stack.jaeger_url}/api/traces",
            params={"service": service, "start": end - 3_600_000_000, "end": end, "limit": 5000},
            timeout=60,
        )
        response.raise_for_status()
        traces = response.json()["data"]
        spans += sum(len(trace["spans"]) for trace in traces)
        assert secret not in json.dumps(traces), service
    assert spans > 0
