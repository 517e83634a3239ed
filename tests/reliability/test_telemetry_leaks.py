"""Over the whole run, no span attribute, span event or log line holds an email address or an
Authorization header value.

Runs after every other reliability test (conftest orders it last): it scans every trace each
stack's Jaeger held when the stack was stopped, the shared stack's Jaeger now, and every log
file. Before that it sends the shared stack traffic that puts addresses and tokens everywhere a
client can: order bodies, rejected bodies, URL paths and queries, User-Agent, baggage, and the
Authorization header of admin calls.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from stackctl.stack import Stack
from tests.reliability.conftest import ADMIN_TOKEN, SENT_SECRETS, StackFactory, record
from tests.reliability.support import SERVICES, baseline_order, order_body, wait_for_traces

# Anything email-shaped, plain or percent-encoded: in spans and the services' own logs. (A match
# starts only where a run of local-part characters does, so long lines scan in linear time.)
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+(?:@|%40)[\w-]+\.[\w.]+", re.IGNORECASE)
# The collector's and Jaeger's logs name Go modules (``connector@v0.165.0``): there an address
# must end in a real top-level domain.
EMAIL_WITH_TLD = re.compile(
    r"(?<![\w.+-])[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.IGNORECASE
)
WRONG = f"leak-wrong-{secrets.token_hex(8)}"
SENT_SECRETS.add(WRONG)


def texts(value: Any) -> Iterator[str]:
    """Every string inside a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)
    elif value is not None:
        yield str(value)


def leak_pattern(email: re.Pattern[str]) -> re.Pattern[str]:
    """One pattern for an address or any token a test sent (they are built before the scan)."""
    tokens = "|".join(re.escape(secret) for secret in sorted(SENT_SECRETS))
    return re.compile(f"{email.pattern}|{tokens}", re.IGNORECASE)


def span_leaks(trace: dict[str, Any]) -> Iterator[str]:
    pattern = leak_pattern(EMAIL)
    for span in trace["spans"]:
        strings = list(texts([span["operationName"], span.get("tags"), span.get("logs")]))
        if pattern.search("\n".join(strings)):  # one search per span; then say where
            for text in strings:
                if pattern.search(text):
                    yield f"trace {trace['traceID']} span {span['operationName']}: {text[:200]}"
    for process in trace.get("processes", {}).values():
        for text in texts(process):
            if pattern.search(text):
                yield f"trace {trace['traceID']} process: {text[:200]}"


def log_leaks(log: Path) -> Iterator[str]:
    pattern = leak_pattern(EMAIL if log.stem in SERVICES else EMAIL_WITH_TLD)
    for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
        try:
            strings = list(texts(json.loads(line)))
        except ValueError:
            strings = []
        # The raw line, and its decoded strings (JSON escapes non-ASCII as \\uXXXX).
        if pattern.search(line) or pattern.search("\n".join(strings)):
            yield f"{log}:{number}: {line[:200]}"


def test_the_scanner_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The control: a planted address and token are found, in a span and in a log line."""
    trace = {
        "traceID": "t",
        "spans": [{"operationName": "x", "tags": [{"key": "url.query", "value": "e=a%40b.co"}]}],
        "processes": {},
    }
    assert len(list(span_leaks(trace))) == 1
    log = tmp_path / "api-gateway.log"
    log.write_text(json.dumps({"message": f"Bearer {ADMIN_TOKEN}"}) + "\n{not json bob@x.io\n")
    assert len(list(log_leaks(log))) == 2


def pii_traffic(stack: Stack) -> list[str]:
    """Requests that carry addresses and tokens everywhere a client can put them."""
    client = httpx.Client(base_url=stack.gateway_url, timeout=15)
    placed = []
    for n in range(5):
        response = client.post(
            "/api/orders",
            json=order_body(email=f"leak.{n}+tag@example.com"),
            headers={
                "User-Agent": f"crawler (+mailto:ops{n}@example.org)",
                "baggage": f"user.email=bob{n}%40example.com,customer=carol{n}@example.net",
                "Idempotency-Key": f"dave{n}@example.com",
            },
        )
        assert response.status_code == 201, response.text
        placed.append(response.json()["traceId"])
    rejected = [
        {**order_body(), "userId": "erin@example.com"},
        {**order_body(), "email": "frank@@example.com"},
        {**order_body(), "notes": "grace@example.com"},
        {**order_body(), "items": [{"sku": "heidi@example.com", "quantity": 1, "price": 1.0}]},
    ]
    for body in rejected:
        assert client.post("/api/orders", json=body).status_code == 422
    for path in (
        "/api/orders/ivan@example.com",
        "/api/inventory/judy@example.com",
        "/api/customers/mallory@example.com?email=oscar%40example.com&cc=peggy@example.com",
    ):
        assert client.get(path, headers={"User-Agent": "x (trent@example.com)"}).status_code in (
            404,
            422,
        )
    # Junk trace-context headers: the propagators must not quote them into the logs.
    for headers in (
        {"baggage": "kim@example.com"},
        {"baggage": "x=" + "y" * 9000 + ",user=lou@example.com"},
        {"baggage": "user=néd@example.com".encode()},  # non-ASCII, as raw UTF-8 bytes
        {
            "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
            "tracestate": "mia@example.com,=,x",
        },
    ):
        assert client.get("/api/inventory/SKU123", headers=headers).status_code == 200
    for token in (ADMIN_TOKEN, WRONG):
        client.get("/api/admin/faults/order-service", headers={"Authorization": f"Bearer {token}"})
    return placed


def test_no_email_or_token_in_any_span_or_log_line(
    stacks: StackFactory, shared_stack: Stack
) -> None:
    with httpx.Client(base_url=shared_stack.gateway_url, timeout=15) as client:
        per_order = baseline_order(shared_stack, client, {"Idempotency-Key": secrets.token_hex(8)})
    placed = pii_traffic(shared_stack)
    wait_for_traces(shared_stack.jaeger_url, placed, per_order, timeout=30)
    stacks.harvest(shared_stack)

    leaks: list[str] = []
    scanned = {"stacks": 0, "traces": 0, "spans": 0, "log_files": 0, "log_lines": 0}
    hashes_seen: set[str] = set()
    trace_ids: set[str] = set()
    for harvest in stacks.harvests.values():
        assert harvest.error is None, f"{harvest.name}: traces not scanned: {harvest.error}"
        assert harvest.traces_file is not None
        traces = json.loads(harvest.traces_file.read_text())
        assert traces and harvest.logs, f"{harvest.name}: nothing to scan"
        scanned["stacks"] += 1
        scanned["traces"] += len(traces)
        trace_ids |= {trace["traceID"] for trace in traces}
        for trace in traces:
            scanned["spans"] += len(trace["spans"])
            leaks += span_leaks(trace)
            hashes_seen |= {
                str(tag["value"])
                for span in trace["spans"]
                for tag in span.get("tags", [])
                if tag["key"] == "notification.recipient_hash"
            }
        for log in harvest.logs:
            scanned["log_files"] += 1
            scanned["log_lines"] += len(log.read_text(errors="replace").splitlines())
            leaks += log_leaks(log)

    assert not leaks, "\n".join(leaks[:50])
    # The scan saw the traces where addresses were handled: their hashes, not the addresses.
    for n in range(5):
        digest = hashlib.sha256(f"leak.{n}+tag@example.com".encode()).hexdigest()[:16]
        assert digest in hashes_seen
    assert set(placed) <= trace_ids, "the scan covered this test's own traffic"
    record("telemetry leaks", **scanned, leaks=0, secrets_checked=len(SENT_SECRETS))
