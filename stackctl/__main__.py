"""``python -m stackctl up|down|status|logs|demo|demo-faults|demo-regression|rolling-restart``:
the local stack for `make`."""

from __future__ import annotations

import time
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from servicekit.catalog import SERVICE_NAMES
from servicekit.terminal import visible, visible_markup
from stackctl.fault_demo import demo_faults
from stackctl.logview import readable
from stackctl.orders import order_body
from stackctl.process import StartError
from stackctl.regression_demo import demo_regression
from stackctl.stack import Stack, local_stack
from stackctl.traces import wait_for_trace

app = typer.Typer(add_completion=False, no_args_is_help=True)
console = Console(highlight=False, emoji=False, soft_wrap=True)  # span text stays as written


def _stack(starts: bool = False) -> Stack:
    try:
        stack = local_stack(starts=starts)
    except (StartError, ValueError) as exc:
        console.print(f"[red]error:[/red] {visible_markup(str(exc))}")
        raise typer.Exit(2) from None
    if stack.moved:
        console.print(
            "note: the running stack keeps the ports and replicas it was started with, so "
            + ", ".join(stack.moved)
            + " is ignored; `make down` first to move it"
        )
    return stack


def _up(stack: Stack) -> None:
    t0 = time.monotonic()
    try:
        stack.up(report=lambda line: console.print(f"  {line}"))
    except StartError as exc:
        console.print(f"[red]error:[/red] {visible_markup(str(exc))}")
        if any(proc.pid() for proc in stack.processes):
            console.print("Processes already started keep running; `make down` stops them.")
        raise typer.Exit(1) from None
    console.print(f"[green]stack up[/green] in {time.monotonic() - t0:.1f} s")
    if stack.prometheus_missing:
        console.print(
            "  note: no `prometheus` on PATH, so Jaeger's RED-metrics API (/api/metrics/..., what "
            "the Monitor tab of Jaeger's UI reads) has no data in local mode (apt-get install "
            "prometheus to get them); everything else works."
        )


@app.command()
def up() -> None:
    """Start Jaeger, the collector, the four services and the trace browser (what is not
    running yet)."""
    stack = _stack(starts=True)
    _up(stack)
    console.print(
        f"  gateway        {stack.gateway_url}/api/orders\n"
        f"  trace browser  {stack.browser_url}/  (recent and flagged traces; /search; "
        "each trace at /trace/<traceId>; /dependencies)\n"
        f"  Jaeger API     {stack.jaeger_url}/api/traces/<traceId>  (and /api/services)\n"
        f"  collector      {stack.collector_metrics_url}  (its own metrics)\n"
        f"  logs           make logs P=<process>  ({stack.run_dir / 'logs'}/)"
    )
    if stack.storage == "opensearch":
        console.print(f"  OpenSearch     {stack.opensearch_url}/_cat/indices?v  (Jaeger's indices)")
    if stack.database == "postgres":
        console.print(
            f"  PostgreSQL     127.0.0.1:{stack.ports.postgres}  (the services' store, one schema "
            "each; docs/scale-out.md, Replicas)"
        )
    if stack.replicas > 1:
        console.print(
            f"  replicas       {stack.replicas} of each service behind haproxy on the usual "
            "ports; make status shows each, make logs P=<service>-<k> one"
        )
    if not stack.prometheus_missing:
        console.print(
            f"  Prometheus     http://127.0.0.1:{stack.ports.prometheus}  (RED metrics behind "
            f"Jaeger's Monitor API: {stack.jaeger_url}/api/metrics/calls?service=api-gateway)"
        )


@app.command()
def down() -> None:
    """Stop exactly what `up` started (from the pid files in run/)."""
    stack = _stack()
    stack.down(report=lambda line: console.print(f"  {line}"))
    console.print("stack down")


@app.command("rolling-restart")
def rolling_restart() -> None:
    """Restart every replica one at a time, each drained in HAProxy first: no request refused."""
    stack = _stack()
    try:
        stack.rolling_restart(report=lambda line: console.print(f"  {line}"))
    except StartError as exc:
        console.print(f"[red]error:[/red] {visible_markup(str(exc))}")
        raise typer.Exit(1) from None
    console.print("replicas restarted")


@app.command()
def url(
    what: Annotated[str, typer.Argument(help="gateway, jaeger or browser")] = "gateway",
) -> None:
    """The base URL of the gateway, Jaeger's query API or the trace browser, on the ports the
    stack runs on."""
    stack = _stack()
    urls = {"gateway": stack.gateway_url, "jaeger": stack.jaeger_url, "browser": stack.browser_url}
    if what not in urls:
        console.print(f"[red]error:[/red] {what!r} is not one of {', '.join(urls)}")
        raise typer.Exit(2)
    console.out(urls[what])


@app.command()
def status() -> None:
    """Each process: pid, health."""
    table = Table("process", "pid", "health", "endpoint")
    for name, pid, state, url in _stack().status():
        colour = "green" if state == "healthy" else "yellow" if pid else "red"
        table.add_row(name, str(pid or "-"), f"[{colour}]{state}[/{colour}]", url)
    console.print(table)


@app.command()
def logs(
    name: Annotated[str | None, typer.Argument(help="one process; all when omitted")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="lines per process")] = 20,
    raw: Annotated[bool, typer.Option(help="the lines as written (JSON)")] = False,
) -> None:
    """The last lines of each process's log (run/logs/<process>.log), readable: time, level,
    message, then the other fields. Control characters are shown escaped, ``--raw`` too: a
    request's path or a span's text can carry terminal escapes."""
    processes = _stack().processes
    names = [proc.name for proc in processes]
    if name is not None and name not in names:
        console.print(f"[red]error:[/red] no process {name!r}; the processes: {', '.join(names)}")
        raise typer.Exit(2)
    for proc in processes:
        if name not in (None, proc.name):
            continue
        console.rule(f"{proc.name}  {proc.log_file}")
        if proc.log_file.exists():
            tail = proc.log_tail(lines).splitlines()
            shown = (visible(line if raw else readable(line)) for line in tail)
            console.out("\n".join(shown), highlight=False)


def show_trace(jaeger_url: str, trace_id: str) -> int:
    """Print the analyzer's view of one trace (``analyze_traces.py --trace``): the local-mode
    trace view, since the go-built Jaeger serves only a placeholder page at ``/trace/<id>``."""
    from trace_analysis.cli import main as analyze

    return analyze(["--trace", trace_id, "--jaeger-url", jaeger_url])


@app.command()
def demo(ok: int = 3, out_of_stock: int = 2) -> None:
    """Bring the stack up if needed, place orders, and show each trace as Jaeger stored it,
    through the analyzer's trace view."""
    stack = _stack(starts=True)
    _up(stack)
    orders = [("SKU123", set(SERVICE_NAMES), {"process_order", "send_notification"})] * ok
    orders += [("OUT-OF-STOCK", {"api-gateway", "inventory-service"}, set())] * out_of_stock
    console.print(f"placing {ok} orders for SKU123 and {out_of_stock} for OUT-OF-STOCK")
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
        for sku, services, operations in orders:
            try:
                response = client.post("/api/orders", json=order_body(sku))
            except httpx.TransportError as exc:
                console.print(
                    f"[red]error:[/red] the gateway at {stack.gateway_url} does not answer "
                    f"({type(exc).__name__}: {exc}). `make status` shows what runs; "
                    "`make logs P=api-gateway` why it stopped."
                )
                raise typer.Exit(2) from None
            answered = time.monotonic()
            try:
                trace_id = response.json()["traceId"]
            except (ValueError, KeyError, TypeError):
                console.print(
                    f"[red]error:[/red] {stack.gateway_url} is not this stack's gateway: "
                    f"POST /api/orders answered {response.status_code} without a traceId. "
                    "`make status` shows what runs where."
                )
                raise typer.Exit(2) from None
            trace = wait_for_trace(stack.jaeger_url, trace_id, services, frozenset(operations))
            console.print(
                f"\n{response.status_code} {sku:<12} trace {trace_id}: {len(trace.spans)} spans "
                f"from {visible_markup(', '.join(sorted(trace.services)))}; "
                f"in Jaeger {time.monotonic() - answered:.2f} s after the response\n"
                f"  in a browser: {stack.browser_url}/trace/{trace_id}\n"
                f"$ python analyze_traces.py --trace {trace_id} --jaeger-url {stack.jaeger_url}"
            )
            show_trace(stack.jaeger_url, trace_id)


app.command("demo-faults")(demo_faults)
app.command("demo-regression")(demo_regression)

if __name__ == "__main__":
    app()
