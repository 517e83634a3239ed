"""Helpers for the reliability tests: placing orders, reading counters, waiting with deadlines.

Everything here talks to 127.0.0.1 only (the stacks' URLs), and every wait has a deadline.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from servicekit.catalog import SERVICE_NAMES
from stackctl.metrics import JAEGER_EXPORTER, JAEGER_SPAN_COUNTERS, span_counts
from stackctl.orders import order_body
from stackctl.ports import Ports
from stackctl.process import ManagedProcess
from stackctl.stack import Stack
from stackctl.traces import StoredTrace, fetch_trace

SERVICES = SERVICE_NAMES
PROBLEM_JSON = "application/problem+json"
T = TypeVar("T")


@dataclass
class OrderOutcome:
    """One request as the client saw it."""

    status: int
    body: dict[str, Any]
    headers: httpx.Headers
    started: float
    elapsed: float

    @property
    def trace_id(self) -> str | None:
        return self.body.get("traceId")

    @property
    def order_id(self) -> str | None:
        return self.body.get("orderId")


def place(
    client: httpx.Client, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> OrderOutcome:
    started = time.monotonic()
    response = client.post("/api/orders", json=body or order_body(), headers=headers)
    elapsed = time.monotonic() - started
    try:
        data = response.json()
    except ValueError:
        data = {"raw": response.text}
    return OrderOutcome(response.status_code, data, response.headers, started, elapsed)


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (httpx.TransportError, OSError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached in {timeout:.0f} s (last: {last!r})")
        time.sleep(interval)


def percentile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def latency_summary(outcomes: list[OrderOutcome]) -> dict[str, float]:
    times = [o.elapsed for o in outcomes]
    return {
        "p50_ms": round(statistics.median(times) * 1000, 1),
        "p95_ms": round(percentile(times, 95) * 1000, 1),
        "max_ms": round(max(times) * 1000, 1),
    }


# --- the services' own span counts and the collector's counters ------------------------------


COUNTERS = {
    "accepted": ("otelcol_receiver_accepted_spans", {}),
    "refused": ("otelcol_receiver_refused_spans", {}),
    "failed": ("otelcol_receiver_failed_spans", {}),
    "sent": ("otelcol_exporter_sent_spans", {"exporter": JAEGER_EXPORTER}),
    "send_failed": ("otelcol_exporter_send_failed_spans", {"exporter": JAEGER_EXPORTER}),
    "enqueue_failed": ("otelcol_exporter_enqueue_failed_spans", {"exporter": JAEGER_EXPORTER}),
    "queue_size": ("otelcol_exporter_queue_size", {"exporter": JAEGER_EXPORTER}),
    "memory_refused": ("otelcol_processor_memory_limiter_refused_spans", {}),
}


def collector(stack: Stack) -> dict[str, float]:
    """The collector's span counters since it started (they restart at 0 with the process)."""
    return span_counts(stack.collector_metrics_url, COUNTERS)


def jaeger(stack: Stack) -> dict[str, float]:
    """Jaeger's span counters since it started: accepted, stored, store_failed."""
    return span_counts(stack.jaeger_metrics_url, JAEGER_SPAN_COUNTERS)


def settle(stack: Stack, timeout: float = 30) -> dict[str, float]:
    """Wait until every span the services finished was accepted, sent on to Jaeger and stored.

    Only meaningful while the collector and Jaeger have run as long as the services (their
    counters are since their own start). Returns the collector's counters at that point. A span
    Jaeger's storage refused fails this at once, naming the count, rather than timing out.
    """

    def settled() -> dict[str, float] | None:
        counts = collector(stack)
        stored = jaeger(stack)
        assert stored["store_failed"] == 0, f"Jaeger's storage refused spans: {stored}"
        ended = sum(stack.spans_ended().values())
        done = (
            ended == counts["accepted"] == counts["sent"] == stored["stored"]
            and counts["queue_size"] == 0
        )
        return counts if done else None

    return wait_until(settled, timeout, "services, collector and Jaeger in step", interval=0.2)


def service_health(stack: Stack) -> dict[str, dict[str, Any]]:
    """Each service's ``/healthz``: ``spans_ended``, ``spans_exported``, ``spans_dropped``."""
    return {
        name: httpx.get(f"{stack.service_url(name)}/healthz", timeout=5).json() for name in SERVICES
    }


def rss_mib(pid: int | None) -> float:
    """Resident memory of a process, from /proc (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return 0.0
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return round(kib / 1024, 1)


# --- traces in Jaeger ------------------------------------------------------------------------


def span_count_by_service(trace: StoredTrace | None) -> Counter[str]:
    if trace is None:
        return Counter()
    return Counter(trace.service_of(span) for span in trace.spans)


def wait_for_traces(
    jaeger_url: str, trace_ids: Iterable[str], expected: Counter[str], timeout: float
) -> dict[str, StoredTrace]:
    """Wait until every trace has exactly ``expected`` spans per service and no orphan."""
    pending = list(dict.fromkeys(trace_ids))
    found: dict[str, StoredTrace] = {}
    deadline = time.monotonic() + timeout
    while pending:
        still = []
        for trace_id in pending:
            try:
                trace = fetch_trace(jaeger_url, trace_id)
            except httpx.TransportError:
                trace = None
            if trace is not None and span_count_by_service(trace) == expected and not trace.orphans:
                found[trace_id] = trace
            else:
                still.append(trace_id)
        pending = still
        if pending and time.monotonic() > deadline:
            sample = fetch_trace(jaeger_url, pending[0])
            raise TimeoutError(
                f"{len(pending)} traces not complete in Jaeger after {timeout:.0f} s, e.g. "
                f"{pending[0]}: {dict(span_count_by_service(sample))}, wanted {dict(expected)}"
            )
        if pending:
            time.sleep(0.2)
    return found


def baseline_order(
    stack: Stack, client: httpx.Client, headers: dict[str, str] | None = None
) -> Counter[str]:
    """Place one order on a quiet stack; its spans per service, once all of them are in Jaeger.

    The reference for "complete": the span count a successful one-line order makes (with these
    headers: an ``Idempotency-Key`` adds the gateway's own database spans), measured rather than
    hard-coded, checked against what the services say they finished.
    """
    before = stack.spans_ended()
    outcome = place(client, headers=headers)
    assert outcome.status == 201, outcome.body

    def complete() -> Counter[str] | None:
        made = Counter({k: v - before[k] for k, v in stack.spans_ended().items()})
        stored = span_count_by_service(fetch_trace(stack.jaeger_url, outcome.trace_id or ""))
        return stored if set(made) == set(SERVICES) and stored == made else None

    return wait_until(complete, 20, "the baseline order's trace in Jaeger", interval=0.2)


def warm_up(
    stack: Stack, client: httpx.Client, orders: int = 20
) -> tuple[Counter[str], list[OrderOutcome]]:
    """The baseline order's spans per service (:func:`baseline_order`), then ``orders`` more
    orders placed one after another, all answered 201."""
    per_order = baseline_order(stack, client)
    placed = [place(client) for _ in range(orders)]
    assert {o.status for o in placed} == {201}, [o.body for o in placed if o.status != 201]
    return per_order, placed


# --- service state, read where it lives ----------------------------------------------------


def available(client: httpx.Client, sku: str) -> int:
    response = client.get(f"/api/inventory/{sku}")
    assert response.status_code == 200, response.text
    return response.json()["available"]


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read a service's SQLite file (read-only, so the test never changes what it checks)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def orders_db(stack: Stack) -> Path:
    return stack.data_dir / "order-service" / "orders.db"


def inventory_db(stack: Stack) -> Path:
    return stack.data_dir / "inventory-service" / "inventory.db"


def stored_order_ids(stack: Stack) -> set[str]:
    return {row[0] for row in query(orders_db(stack), "SELECT order_id FROM orders")}


# --- background traffic ----------------------------------------------------------------------


@dataclass
class Load:
    """Orders placed one after another on a thread until stopped: traffic during a fault.

    ``rate`` (orders per second) paces them (an order late by more than the interval starts at
    once: the rate is an upper bound); 0 places them back to back, ``pause`` apart.
    """

    base_url: str
    body: dict[str, Any] = field(default_factory=order_body)
    headers: dict[str, str] = field(default_factory=dict)
    pause: float = 0.0
    rate: float = 0.0
    outcomes: list[OrderOutcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=15) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                if self.rate:
                    self._stop.wait(max(0.0, next_at - time.monotonic()))
                    next_at = max(next_at + 1 / self.rate, time.monotonic())
                started = time.monotonic()
                try:
                    self.outcomes.append(place(client, self.body, self.headers))
                    pause = self.pause
                except httpx.TransportError as exc:  # the gateway itself is down: status 0
                    elapsed = time.monotonic() - started
                    error = {"error": repr(exc)}
                    self.outcomes.append(OrderOutcome(0, error, httpx.Headers(), started, elapsed))
                    pause = max(self.pause, 0.05)
                self._stop.wait(pause)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the load thread did not stop"


def dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


@contextmanager
def trace_browser(jaeger_url: str, workdir: Path, **settings: str) -> Iterator[str]:
    """The real trace browser (its own process, a free port) reading ``jaeger_url``, with extra
    settings as environment variables; yields its base URL once ``/healthz`` answers."""
    port = Ports.free().trace_browser
    env = {"JAEGER_URL": jaeger_url, "TRACE_BROWSER_PORT": str(port), **settings}
    url = f"http://127.0.0.1:{port}"
    proc = ManagedProcess(
        "trace-browser",
        [sys.executable, "-m", "trace_analysis.browser"],
        f"{url}/healthz",
        workdir,
        env,
        ports={"TRACE_BROWSER_PORT": port},
    )
    proc.start()
    try:
        proc.wait_healthy(time.monotonic() + 60)
        yield url
    finally:
        proc.stop()
