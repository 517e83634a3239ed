"""``python -m stackctl demo-regression`` (``make demo-regression``): before and after a slowdown.

1. Brings the local stack up if needed, with an ``ADMIN_TOKEN`` (as ``make demo-faults``).
2. Places a few warm-up orders, then the baseline window's. Waits until Jaeger holds every
   trace.
3. Injects a latency fault into one service (the gateway's ``/api/admin/faults/{service}``),
   places the same orders again: the candidate window. Clears the fault, waits for the traces.
4. Runs ``analyze_traces.py --lookback ... --baseline-window START..END`` against Jaeger, so
   both windows are read live, and checks its verdict (``--format json``, see :func:`check`):
   the orders regressed and are attributed to an operation of the faulted service, which
   regressed itself, and nothing regressed for errors; exits 1 if not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer

from servicekit.terminal import visible_all, visible_markup
from stackctl.fault_demo import (
    DemoError,
    admin,
    bring_up,
    console,
    place_orders,
    resolve_token,
    run_analyzer,
    wait_for_traces,
)
from stackctl.process import StartError
from stackctl.stack import Stack, local_stack

COMMAND = "demo-regression"  # the make target, named in advice
ROOT = ("api-gateway", "POST /api/orders")  # the requests the demo sends
GAP_S = 3.0  # between the two windows, so neither reads the other's traces
WARM_UP = 8  # orders before the baseline: first requests (connections, imports) are slower


def demo_regression(
    service: Annotated[str, typer.Option(help="service that gets the latency")] = (
        "inventory-service"
    ),
    latency_ms: Annotated[int, typer.Option(help="added latency, ms")] = 200,
    orders: Annotated[int, typer.Option(help="orders per window")] = 60,
    concurrency: Annotated[int, typer.Option(help="orders in flight at once")] = 4,
) -> None:
    """Place orders, then the same with a latency fault in one service, and check that the
    trace analyzer, comparing the two windows, names that service's operation."""
    try:
        stack = local_stack(starts=True)
        running = stack.process("api-gateway").pid() is not None
        token = resolve_token(stack, running, COMMAND)
        bring_up(stack, token)
        with httpx.Client(base_url=stack.gateway_url, timeout=15) as client:
            admin(client, "GET", service, token, COMMAND)  # before any order: usable admin?
        table, report = compare_windows(stack, token, service, latency_ms, orders, concurrency)
    except (DemoError, StartError, ValueError) as exc:
        console.print(f"[red]error:[/red] {visible_markup(str(exc))}")
        raise typer.Exit(2) from None
    console.out(table.rstrip())
    problems = check(report["comparison"], service)
    others = [
        op
        for op in report["comparison"]["operations"]
        if op["regressed"] and op["service"] not in (service, ROOT[0])
    ]
    if others and not problems:
        console.print(
            "note: "
            + visible_markup(", ".join(f"{op['service']} {op['operation']}" for op in others))
            + f" also got slower, by far less than {service}: the load on this machine moved "
            "between the two windows"
        )
    if problems:
        console.print("[red]MISMATCH[/red]: " + visible_markup("; ".join(problems)))
        raise typer.Exit(1)
    console.print(
        f"[green]OK[/green]: the regression is attributed to {service}, the service with the "
        "latency fault"
    )


def compare_windows(
    stack: Stack,
    token: str,
    service: str,
    latency_ms: int,
    count: int,
    concurrency: int,
    say: Callable[[str], None] = console.print,
) -> tuple[str, dict[str, Any]]:
    """Both windows of orders, then the analyzer's comparison: its table and its JSON report."""
    say(f"warm-up: {WARM_UP} orders, not compared")
    place_orders(stack.gateway_url, WARM_UP, concurrency)
    time.sleep(GAP_S)
    say(f"baseline: placing {count} orders, {concurrency} at a time")
    baseline_start = time.time()
    placed = place_orders(stack.gateway_url, count, concurrency)
    baseline_end = time.time()
    _answers(placed, say)
    wait_for_traces(stack.jaeger_url, placed)

    time.sleep(max(0.0, GAP_S - (time.time() - baseline_end)))
    fault = {"kind": "latency", "value": str(latency_ms), "duration_seconds": 300}
    with httpx.Client(base_url=stack.gateway_url, timeout=15) as client:
        candidate_start = time.time()
        try:
            admin(client, "POST", service, token, COMMAND, json=fault)
            say(f"injected into {service}: latency {latency_ms} ms")
            say(f"candidate: placing {count} orders, {concurrency} at a time")
            placed = place_orders(stack.gateway_url, count, concurrency)
        finally:
            admin(client, "DELETE", service, token, COMMAND)
            say("fault cleared")
    _answers(placed, say)
    wait_for_traces(stack.jaeger_url, placed)

    window = f"{_iso(baseline_start - 0.5)}..{_iso(baseline_end + 0.5)}"
    # the candidate window starts midway between the two phases
    split = (baseline_end + candidate_start) / 2

    def args() -> list[str]:
        lookback = f"{time.time() - split:.1f}s"
        return [
            "--jaeger-url",
            stack.jaeger_url,
            "--lookback",
            lookback,
            "--baseline-window",
            window,
        ]

    shown = args()
    say(f"\n$ python analyze_traces.py {' '.join(shown)}\n")
    table = run_analyzer(shown)
    if table.returncode != 0:
        raise DemoError(f"the analyzer failed ({table.returncode}): {table.stderr.strip()}")
    as_json = run_analyzer([*args(), "--format", "json"])
    if as_json.returncode != 0:
        raise DemoError(f"the analyzer failed ({as_json.returncode}): {as_json.stderr.strip()}")
    # span text (service and operation names) made visible before any of it is printed
    return table.stdout, visible_all(json.loads(as_json.stdout))


def check(comparison: dict[str, Any], service: str, entry: tuple[str, str] = ROOT) -> list[str]:
    """What is wrong with the comparison's verdict (nothing: an empty list).

    The requests the users sent (``entry``) must have regressed, and be attributed first to
    an operation of ``service``, which must have regressed for latency itself. Other
    operations may have regressed too: on a shared machine the load moves between the two
    windows, and the analyzer rightly reports a few ms more; but not by more than a quarter of
    what the fault added, and nothing may regress for errors.
    """
    problems = []
    ops = {(op["service"], op["operation"]): op for op in comparison["operations"]}
    faulted = [
        op for op in ops.values() if op["service"] == service and op["latency"] == "regressed"
    ]
    if not faulted:
        problems.append(f"no operation of {service} (latency fault) regressed")
    root = ops.get(entry)
    name = " ".join(entry)
    if root is None or not root["regressed"]:
        problems.append(f"{name} (the orders) did not regress")
    elif not root["attribution"] or root["attribution"][0]["service"] != service:
        top = root["attribution"][0] if root["attribution"] else None
        blamed = f"{top['service']} {top['operation']}" if top else "nothing"
        problems.append(f"{name} is attributed to {blamed}, not to {service}")
    added = max((op["change"]["p50_ms"] for op in faulted), default=0.0)
    for op in ops.values():
        if not op["regressed"]:
            continue
        what = f"{op['service']} {op['operation']}"
        if op["errors"] == "regressed":
            problems.append(f"{what} regressed for errors, but only latency was injected")
        for contributor in op["attribution"]:
            if contributor["service"] != service and contributor["change_ms"] > added / 4:
                problems.append(
                    f"{what} is attributed to {contributor['service']} "
                    f"{contributor['operation']} (+{contributor['change_ms']:.1f} ms)"
                )
    return problems


def _answers(placed: list[tuple[int, str, float]], say: Callable[[str], None]) -> None:
    statuses: dict[int, int] = {}
    for status, _, _ in placed:
        statuses[status] = statuses.get(status, 0) + 1
    seconds = sorted(s for _, _, s in placed)
    say(
        "  answers: "
        + ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))
        + f"; median {1000 * seconds[len(seconds) // 2]:.0f} ms"
    )
    if set(statuses) != {201}:
        raise DemoError(f"some orders failed ({statuses}): the comparison would mix causes")


def _iso(epoch_s: float) -> str:
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
