"""``python -m stackctl demo-faults`` (``make demo-faults``): inject faults, then find them.

1. Brings the local stack up if needed, with an ``ADMIN_TOKEN`` so the fault admin routes are on.
2. Through the gateway's ``/api/admin/faults/{service}``, for ``duration_seconds``: a latency
   fault in one service (inventory-service, 400 ms) and an error fault in another
   (order-service, HTTP 503 for a share of requests).
3. Places orders, waits until Jaeger holds every one of their traces, clears the faults.
4. Runs ``analyze_traces.py`` over the window of the demo and checks that the services it blames
   are exactly the two that had faults; exits 1 if not.

The admin token: ``ADMIN_TOKEN`` from the environment, else the one this command saved in
``run/admin-token`` when it started the stack. A stack that is already running without a token
(or with another one) cannot take faults: the command says so and how to restart it.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from stackctl.process import StartError
from stackctl.stack import ROOT, Stack, local_stack
from stackctl.traces import wait_for_trace

console = Console(highlight=False, soft_wrap=True)
ANALYZER = ROOT / "analyze_traces.py"
ORDER = {
    "userId": 7,
    "items": [{"sku": "SKU123", "quantity": 1, "price": 12.5}],
    "email": "fault-demo@example.com",
}


class DemoError(RuntimeError):
    """Something the user has to fix; the message says what."""


def token_file(stack: Stack) -> Path:
    return stack.run_dir / "admin-token"


def resolve_token(stack: Stack, running: bool) -> str:
    """``ADMIN_TOKEN``, else the token saved when this command started the stack, else (only
    when the stack is not running yet) a new random one, saved for the next run."""
    if os.environ.get("ADMIN_TOKEN"):
        return os.environ["ADMIN_TOKEN"]
    saved = token_file(stack)
    if saved.exists() and saved.read_text().strip():
        return saved.read_text().strip()
    if running:
        raise DemoError(
            "the stack is already running and no ADMIN_TOKEN is known for it. Run with the "
            "token it was started with (ADMIN_TOKEN=... make demo-faults), or restart it: "
            "`make down && make demo-faults`."
        )
    token = secrets.token_urlsafe(24)
    stack.run_dir.mkdir(parents=True, exist_ok=True)
    saved.touch(mode=0o600)
    saved.write_text(token + "\n")
    return token


def bring_up(stack: Stack, token: str) -> None:
    """Start what is not running; the services started now get ``ADMIN_TOKEN``."""
    os.environ["ADMIN_TOKEN"] = token  # stackctl passes the environment to the processes
    t0 = time.monotonic()
    stack.up(report=lambda line: console.print(f"  {line}"))
    console.print(f"[green]stack up[/green] in {time.monotonic() - t0:.1f} s")


def admin(client: httpx.Client, method: str, service: str, token: str, **kw: Any) -> httpx.Response:
    response = client.request(
        method,
        f"/api/admin/faults/{service}",
        headers={"authorization": f"Bearer {token}"},
        **kw,
    )
    if response.status_code == 404:
        raise DemoError(
            "the running stack has its fault admin routes off: it was started without "
            "ADMIN_TOKEN. Restart it with one: `make down && make demo-faults` (or "
            "`ADMIN_TOKEN=<token> make up`)."
        )
    if response.status_code == 401:
        raise DemoError(
            "the running stack was started with another ADMIN_TOKEN: run with that one "
            "(ADMIN_TOKEN=<token> make demo-faults) or restart it: "
            "`make down && make demo-faults`."
        )
    if response.status_code >= 400:
        raise DemoError(f"{method} {response.url}: HTTP {response.status_code} {response.text}")
    return response


def place_orders(gateway_url: str, count: int, concurrency: int) -> list[tuple[int, str, float]]:
    """(status, trace id, seconds) per order."""

    def one(_: int) -> tuple[int, str, float]:
        with httpx.Client(timeout=30) as client:
            t0 = time.monotonic()
            response = client.post(f"{gateway_url}/api/orders", json=ORDER)
            return response.status_code, response.json()["traceId"], time.monotonic() - t0

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


def wait_for_traces(jaeger_url: str, orders: list[tuple[int, str, float]]) -> None:
    for status, trace_id, _ in orders:
        services = {"api-gateway", "inventory-service", "order-service"}
        operations = frozenset({"process_order"}) if status == 201 else frozenset()
        wait_for_trace(jaeger_url, trace_id, services, operations, timeout=30)


def culprits(report: Any) -> dict[str, set[str]]:
    """Service -> fault kinds / reasons, from the analyzer's JSON report.

    Reads every flagged trace's verdict: the service that made it slow (most self time on the
    critical path) and the service of the first failing span. Key names are matched loosely
    (``slow``/``error`` culprits, ``service`` fields) so that small schema changes in the
    analyzer do not break the demo; what matters is which services it blames.
    """
    found: dict[str, set[str]] = {}
    traces = report.get("traces") or report.get("flagged") or [] if isinstance(report, dict) else []
    for trace in traces:
        for key, value in trace.items():
            if not isinstance(value, dict) or key in ("summary", "spans"):
                continue
            service = value.get("service") or value.get("service_name")
            if isinstance(service, str):
                found.setdefault(service, set()).add(key)
    return found


def run_analyzer(
    stack: Stack, threshold_ms: int, lookback: str, fmt: str
) -> subprocess.CompletedProcess:
    argv = [
        sys.executable,
        str(ANALYZER),
        str(threshold_ms),
        "--jaeger-url",
        stack.jaeger_url,
        "--lookback",
        lookback,
        "--format",
        fmt,
    ]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def demo_faults(
    latency_service: Annotated[str, typer.Option(help="service that gets the latency")] = (
        "inventory-service"
    ),
    latency_ms: Annotated[int, typer.Option(help="added latency, ms")] = 400,
    error_service: Annotated[str, typer.Option(help="service that gets the errors")] = (
        "order-service"
    ),
    error_status: Annotated[int, typer.Option(help="HTTP status it answers")] = 503,
    error_probability: Annotated[float, typer.Option(help="share of requests that fail")] = 0.3,
    orders: Annotated[int, typer.Option(help="orders to place while the faults are on")] = 40,
    concurrency: Annotated[int, typer.Option(help="orders in flight at once")] = 4,
    threshold_ms: Annotated[int, typer.Option(help="the analyzer's slow threshold")] = 300,
) -> None:
    """Inject a latency fault and an error fault, send orders, and check that the trace analyzer
    names exactly those two services as the culprits."""
    try:
        _demo(
            latency_service,
            latency_ms,
            error_service,
            error_status,
            error_probability,
            orders,
            concurrency,
            threshold_ms,
        )
    except (DemoError, StartError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _demo(
    latency_service: str,
    latency_ms: int,
    error_service: str,
    error_status: int,
    error_probability: float,
    count: int,
    concurrency: int,
    threshold_ms: int,
    stack: Stack | None = None,
) -> None:
    """The demo against ``stack`` (default: the one `make up` runs)."""
    if latency_service == error_service:
        raise DemoError("use two different services for the latency and the error fault")
    if not ANALYZER.exists():
        raise DemoError(f"{ANALYZER.name} is not in this checkout yet: nothing to analyze with")
    stack = stack or local_stack()
    running = stack.process("api-gateway").pid() is not None
    token = resolve_token(stack, running)
    bring_up(stack, token)
    started = time.time()
    # Long enough for the traffic; cleared explicitly afterwards, and by itself if this dies.
    duration = 60 + count * (latency_ms / 1000) / max(1, concurrency) * 2
    faults = {
        latency_service: {"kind": "latency", "value": str(latency_ms)},
        error_service: {
            "kind": "error",
            "value": str(error_status),
            "probability": error_probability,
        },
    }
    results: list[tuple[int, str, float]] = []
    with httpx.Client(base_url=stack.gateway_url, timeout=15) as client:
        try:
            for service, fault in faults.items():
                admin(client, "POST", service, token, json={**fault, "duration_seconds": duration})
                console.print(
                    f"injected into {service}: {fault['kind']} {fault['value']}"
                    f" (probability {fault.get('probability', 1.0)}) for {duration:.0f} s"
                )
            console.print(f"placing {count} orders, {concurrency} at a time")
            results = place_orders(stack.gateway_url, count, concurrency)
        finally:
            for service in faults:
                admin(client, "DELETE", service, token)
            console.print("faults cleared")
    statuses = Counter(status for status, _, _ in results)
    slow = sum(1 for _, _, seconds in results if seconds * 1000 > threshold_ms)
    console.print(
        "  answers: "
        + ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))
        + f"; {slow} slower than {threshold_ms} ms"
    )
    console.print("waiting until Jaeger holds every trace")
    wait_for_traces(stack.jaeger_url, results)

    lookback = f"{math.ceil((time.time() - started) / 60) + 1}m"
    console.print(
        f"\n$ python analyze_traces.py {threshold_ms} --jaeger-url {stack.jaeger_url} "
        f"--lookback {lookback}\n"
    )
    table = run_analyzer(stack, threshold_ms, lookback, "table")
    console.out(table.stdout.rstrip() or table.stderr.rstrip())
    as_json = run_analyzer(stack, threshold_ms, lookback, "json")
    if as_json.returncode not in (0, 1):
        raise DemoError(f"the analyzer failed ({as_json.returncode}): {as_json.stderr.strip()}")
    blamed = culprits(json.loads(as_json.stdout))
    expected = {latency_service, error_service}
    console.print(
        "\nthe analyzer blames: "
        + (
            ", ".join(f"{s} ({', '.join(sorted(k))})" for s, k in sorted(blamed.items()))
            or "nothing"
        )
    )
    if set(blamed) == expected:
        console.print(
            f"[green]OK[/green]: exactly the two faulty services, {', '.join(sorted(expected))}"
        )
        return
    missing, extra = expected - set(blamed), set(blamed) - expected
    console.print(
        "[red]MISMATCH[/red]:"
        + (f" not named: {', '.join(sorted(missing))};" if missing else "")
        + (f" named without a fault: {', '.join(sorted(extra))}" if extra else "")
    )
    raise typer.Exit(1)
