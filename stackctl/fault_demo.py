"""``python -m stackctl demo-faults`` (``make demo-faults``): inject faults, then find them.

1. Brings the local stack up if needed, with an ``ADMIN_TOKEN`` so the fault admin routes are on.
2. Through the gateway's ``/api/admin/faults/{service}``, for ``duration_seconds``: a latency
   fault in one service (inventory-service, 400 ms) and an error fault in another
   (order-service, HTTP 503 for a share of requests).
3. Places orders, waits until Jaeger holds every one of their traces, clears the faults.
4. Runs ``analyze_traces.py`` over the window of the demo, then checks its verdicts on the
   demo's traces (``--format json``): the latency service must be the culprit of the slow
   traces, the error service the origin of the failing ones, and no other service blamed;
   exits 1 if not.

The admin token: ``ADMIN_TOKEN`` from the environment, else the one ``make up`` saved in
``run/admin-token`` (:mod:`stackctl.admin_token`), so up, demo, demo-faults works in that order.
A stack that is already running without a token (or with another one) cannot take faults: the
command says so and how to restart it.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from servicekit.terminal import visible_all, visible_markup
from stackctl.admin_token import admin_token
from stackctl.orders import order_body
from stackctl.process import StartError
from stackctl.stack import ROOT, Stack, local_stack
from stackctl.traces import wait_for_trace

console = Console(highlight=False, emoji=False, soft_wrap=True)  # span text stays as written
ANALYZER = ROOT / "analyze_traces.py"
ORDER = order_body(email="fault-demo@example.com", user_id=7)


class DemoError(RuntimeError):
    """Something the user has to fix; the message says what."""


def resolve_token(stack: Stack, running: bool, command: str = "demo-faults") -> str:
    """The stack's admin token (:func:`stackctl.admin_token.admin_token`: ``ADMIN_TOKEN``, else
    the one ``up`` saved in ``run/``, else a new one when nothing runs yet). ``command`` (the
    make target) is named in the error's advice when a running stack has none known."""
    token = admin_token(stack.run_dir, os.environ, create=not running)
    if token is None:
        raise DemoError(
            "the stack is already running and no ADMIN_TOKEN is known for it. Run with the "
            f"token it was started with (ADMIN_TOKEN=... make {command}), or restart it: "
            f"`make down && make {command}`."
        )
    return token


def bring_up(stack: Stack, token: str) -> None:
    """Start what is not running; the services started now get ``ADMIN_TOKEN``."""
    os.environ["ADMIN_TOKEN"] = token  # stackctl passes the environment to the processes
    t0 = time.monotonic()
    stack.up(report=lambda line: console.print(f"  {line}"))
    console.print(f"[green]stack up[/green] in {time.monotonic() - t0:.1f} s")


def admin(
    client: httpx.Client,
    method: str,
    service: str,
    token: str,
    command: str = "demo-faults",
    **kw: Any,
) -> httpx.Response:
    """One call to the gateway's fault admin; a refusal says how to get a usable stack
    (``command``: the make target to name)."""
    response = client.request(
        method,
        f"/api/admin/faults/{service}",
        headers={"authorization": f"Bearer {token}"},
        **kw,
    )
    if response.status_code == 404:
        raise DemoError(
            "the running stack has its fault admin routes off: it was started without "
            f"ADMIN_TOKEN. Restart it with one: `make down && make {command}` (or "
            "`ADMIN_TOKEN=<token> make up`)."
        )
    if response.status_code == 401:
        raise DemoError(
            "the running stack was started with another ADMIN_TOKEN: run with that one "
            f"(ADMIN_TOKEN=<token> make {command}) or restart it: "
            f"`make down && make {command}`."
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


SLOW, ERROR = "slow: most self time on the critical path", "failing: first failing span"


def verdicts(report: dict[str, Any], trace_ids: set[str]) -> dict[str, Counter[str]]:
    """Service -> how many of the demo's traces the analyzer blamed on it, and for what.

    Only the analyzer's own verdicts count: ``culprit`` of a slow trace and ``error_origin`` of a
    failing one. The ``faults`` it lists are the ground truth read from the spans, so they are
    not evidence that it found anything. Traces that are not the demo's are left out.
    """
    blamed: dict[str, Counter[str]] = {}
    for trace in report["traces"]:
        if trace["trace_id"] not in trace_ids:
            continue
        if trace["slow"] and trace["culprit"]:
            blamed.setdefault(trace["culprit"]["service"], Counter())[SLOW] += 1
        if trace["error"] and trace["error_origin"]:
            blamed.setdefault(trace["error_origin"]["service"], Counter())[ERROR] += 1
    return blamed


def say_verdicts(blamed: dict[str, Counter[str]]) -> None:
    """Print what :func:`verdicts` found, per service (span text: made visible, never markup)."""
    console.print("\nthe analyzer's verdicts on the demo's traces (from --format json):")
    for service, roles in sorted(blamed.items()):
        console.print(
            f"  {visible_markup(service)}: "
            + ", ".join(f"{n} traces {role}" for role, n in sorted(roles.items()))
        )


def check(blamed: dict[str, Counter[str]], latency_service: str, error_service: str) -> list[str]:
    """What is wrong with the verdicts (nothing: an empty list)."""
    problems = []
    if not blamed.get(latency_service, Counter())[SLOW]:
        problems.append(f"{latency_service} (latency fault) is not named for slow traces")
    if not blamed.get(error_service, Counter())[ERROR]:
        problems.append(f"{error_service} (error fault) is not named for failing traces")
    for service in sorted(set(blamed) - {latency_service, error_service}):
        problems.append(f"{service} is blamed but had no fault")
    if blamed.get(latency_service, Counter())[ERROR]:
        problems.append(f"{latency_service} is named as the origin of errors")
    if blamed.get(error_service, Counter())[SLOW]:
        problems.append(f"{error_service} is named as the cause of slowness")
    return problems


def analyzer_argv(stack: Stack, threshold_ms: int, lookback: str) -> list[str]:
    return [str(threshold_ms), "--jaeger-url", stack.jaeger_url, "--lookback", lookback]


def run_analyzer(args: list[str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(ANALYZER), *args]
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
    names those two services as the culprits (and no other)."""
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
        console.print(f"[red]error:[/red] {visible_markup(str(exc))}")
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
    stack = stack or local_stack(starts=True)
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

    lookback = f"{math.ceil(time.time() - started) + 5}s"  # the demo's own window
    args = analyzer_argv(stack, threshold_ms, lookback)
    console.print(f"\n$ python analyze_traces.py {' '.join(args)} --top 8\n")
    table = run_analyzer([*args, "--top", "8"])
    console.out(table.stdout.rstrip() or table.stderr.rstrip())
    as_json = run_analyzer([*args, "--format", "json"])
    if as_json.returncode not in (0, 1):
        raise DemoError(f"the analyzer failed ({as_json.returncode}): {as_json.stderr.strip()}")
    # span text (service names) made visible before any of it is printed
    report = visible_all(json.loads(as_json.stdout))
    blamed = verdicts(report, {trace_id for _, trace_id, _ in results})
    say_verdicts(blamed)
    problems = check(blamed, latency_service, error_service)
    if not problems:
        console.print(
            f"[green]OK[/green]: the culprits are {latency_service} (slow) and "
            f"{error_service} (failing), the two services with faults"
        )
        return
    console.print("[red]MISMATCH[/red]: " + visible_markup("; ".join(problems)))
    raise typer.Exit(1)
