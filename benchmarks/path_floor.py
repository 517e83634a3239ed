"""The order path's floor: what an order's parts cost bare, measured on this machine.

    python benchmarks/path_floor.py [--seconds 4] [--warmup 2] [--repeat 3] [--connections 8]
    python benchmarks/path_floor.py serve --port PORT [--downstream URL]   # one bare app

An order is 4 hops (the gateway, inventory-service, order-service and notification-service each
serve one request), 3 client calls (the gateway calls the three others through
:class:`servicekit.http_client.Downstream`) and the SQL statements the services' stores run.
Each part is measured bare, in processes of its own, with tracing off:

* **hop**: a FastAPI app with one route, ``POST /api/orders``, which validates the order body
  (the JSON wrk posts, ``stackctl.orders.order_body``) with a small pydantic model and answers a
  small JSON 201. uvicorn serves it as the services are served (httptools, the loop ``auto``
  picks: uvloop where installed; no access log), without the project's layers: no middleware,
  no instrumentation, no bounded protocol subclass (:mod:`servicekit.server`). wrk
  (``benchmarks/overhead.py`` ``wrk()``) drives it at ``--connections`` for ``--seconds``
  after ``--warmup``; the server's user + system CPU (``/proc/<pid>/stat``) over the run,
  divided by the requests, is ms of CPU per request.
* **call**: the same app, whose route also makes one call through a ``Downstream`` built as the
  services build it with ``OTEL_SDK_DISABLED=true`` (:class:`servicekit.telemetry.Telemetry`:
  a no-op tracer provider, the httpx instrumentation in place), posting the order to a second
  bare app in another process and reading its JSON answer. The caller's CPU per request minus
  the bare hop's, from the same repetition, is one call.
* **sql**: one order's store calls in this process, on SQLite files in a temporary directory:
  inventory-service's ``reserve``, order-service's ``create`` (insert, then read back) and
  notification-service's insert (``Notifier.record``), untraced.
  The statements are counted first by running one order through the same stores traced (one
  span per statement, :mod:`servicekit.storage.base`); then ``--orders`` orders are timed with
  ``time.process_time`` (the ``BEGIN IMMEDIATE``/``COMMIT`` around them included).

Hop and call are measured ``--repeat`` times, alternating, and the medians kept (the call: the
median of the per-repetition differences). ``floor_ms = 4 x hop_ms + 3 x call_ms + sql_ms``.

Prints progress on stderr and one JSON object on stdout: ``hop_ms``, ``call_ms``, ``caller_ms``
(hop and call, the calling process's CPU per request), ``sql_ms``, ``statements`` (count) and
``statement_names``, ``hops``, ``calls``, ``floor_ms``, the per-repetition figures
(``hop_runs``, ``caller_runs``) and the bare hop's throughput (``hop_rps``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from servicekit.catalog import SERVICE_NAMES  # noqa: E402

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI
    from opentelemetry.trace import TracerProvider

HOPS = len(SERVICE_NAMES)  # each service serves one request per order
CALLS = HOPS - 1  # the gateway calls each of the others once
GOAL = 1.5  # the services' untraced CPU per order at most this multiple of the floor
CALLEE = "bare-callee"


def say(line: str) -> None:
    print(f"[path-floor] {line}", file=sys.stderr, flush=True)


# --- the bare apps (each served in a process of its own) -------------------------------------


class Line(BaseModel):
    sku: str
    quantity: int
    price: float | None = None


class Order(BaseModel):
    """The order body, validated as small as it gets."""

    userId: int
    items: list[Line]
    email: str


def build_app(
    downstream_url: str | None = None, transport: httpx.AsyncBaseTransport | str = "aiohttp"
) -> FastAPI:
    """The bare hop: ``POST /api/orders`` validates the order and answers ``201
    {"status": "confirmed"}``. With ``downstream_url`` it first posts the order there through a
    :class:`~servicekit.http_client.Downstream` (over ``transport``: a transport, or one of
    :data:`servicekit.http_client.TRANSPORTS` by name)
    built as a service builds it; the environment must say ``OTEL_SDK_DISABLED=true``."""
    from fastapi import FastAPI

    from servicekit.http_client import Downstream
    from servicekit.telemetry import Telemetry

    app = FastAPI()
    downstream = None
    if downstream_url is not None:
        provider = Telemetry.create(CALLEE, "0", set_global=False).provider
        downstream = Downstream(CALLEE, downstream_url, 5.0, provider, transport)

    @app.post("/api/orders", status_code=201)
    async def place(order: Order) -> dict[str, str]:
        if downstream is not None:
            response = await downstream.request(
                "POST", "/api/orders", json=order.model_dump(mode="json")
            )
            response.json()
        return {"status": "confirmed"}

    return app


def serve(port: int, downstream_url: str | None, transport: str = "aiohttp") -> None:
    """Serve :func:`build_app` on 127.0.0.1:``port`` until killed."""
    import uvicorn

    os.environ["OTEL_SDK_DISABLED"] = "true"
    uvicorn.run(
        build_app(downstream_url, transport),
        host="127.0.0.1",
        port=port,
        http="httptools",
        log_config=None,
        access_log=False,
    )


@contextmanager
def bare_server(
    port: int, downstream_url: str | None = None, transport: str = "aiohttp"
) -> Iterator[int]:
    """A bare app in a fresh interpreter, ready to answer; yields its pid."""
    import httpx

    from stackctl.orders import order_body

    argv = [sys.executable, __file__, "serve", "--port", str(port)]
    if downstream_url:
        argv += ["--downstream", downstream_url, "--transport", transport]
    env = {**os.environ, "OTEL_SDK_DISABLED": "true"}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/api/orders", json=order_body())
                response.raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"bare app on port {port} did not come up") from None
                time.sleep(0.1)
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- hop and call ----------------------------------------------------------------------------


def cpu_per_request(cpu_seconds: float, requests: int) -> float:
    """Milliseconds of CPU per request (ValueError when no request was served)."""
    if requests <= 0:
        raise ValueError("no request was served")
    return 1000 * cpu_seconds / requests


def served(pid: int, url: str, connections: int, seconds: float) -> tuple[float, dict[str, Any]]:
    """(ms of CPU per request of process ``pid``, wrk's result) over one wrk run."""
    import overhead  # the driver's only: a bare app's process loads what a service loads

    before = overhead.process_seconds(pid)
    result = overhead.wrk(url, connections, seconds)
    spent = overhead.process_seconds(pid) - before
    if result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(f"{url}: {result['non_2xx']} non-2xx, {result['socket_errors']} errors")
    return cpu_per_request(spent, result["requests"]), result


def hop_and_call(connections: int, seconds: float, warmup: float, repeat: int) -> dict[str, Any]:
    """The bare hop and the hop with one call over each transport (the services' default first),
    ``repeat`` times alternating (ms per request)."""
    import overhead

    from servicekit.http_client import TRANSPORTS
    from servicekit.settings import ServiceSettings
    from stackctl.ports import free_ports

    default = ServiceSettings().http_client_transport
    transports = [default, *(t for t in TRANSPORTS if t != default)]
    hop_port, callee_port, *caller_ports = free_ports(2 + len(transports))
    hop_url = f"http://127.0.0.1:{hop_port}"
    callee_url = f"http://127.0.0.1:{callee_port}"
    hops: list[float] = []
    callers: dict[str, list[float]] = {t: [] for t in transports}
    rps = []
    with ExitStack() as stack:
        hop_pid = stack.enter_context(bare_server(hop_port))
        stack.enter_context(bare_server(callee_port))
        pids = {
            t: stack.enter_context(bare_server(port, callee_url, t))
            for t, port in zip(transports, caller_ports, strict=True)
        }
        urls = {
            t: f"http://127.0.0.1:{port}" for t, port in zip(transports, caller_ports, strict=True)
        }
        for url in (hop_url, *urls.values()):
            overhead.wrk(url, connections, warmup)
        for number in range(repeat):
            hop, result = served(hop_pid, hop_url, connections, seconds)
            hops.append(hop)
            rps.append(overhead.requests_per_second(result))
            for t in transports:
                callers[t].append(served(pids[t], urls[t], connections, seconds)[0])
            calls = ", ".join(f"{t} {callers[t][-1]:.3f}" for t in transports)
            say(f"  {number + 1}/{repeat}: hop {hop:.3f} ms, hop with a call: {calls} ms")

    def call(t: str) -> float:
        return statistics.median(c - h for c, h in zip(callers[t], hops, strict=True))

    return {
        "hop_runs": hops,
        "caller_runs": callers[default],
        "hop_ms": statistics.median(hops),
        "caller_ms": statistics.median(callers[default]),
        "transport": default,
        "call_ms": call(default),
        "call_ms_by_transport": {t: call(t) for t in transports},
        "hop_rps": statistics.median(rps),
    }


# --- the SQL statements ----------------------------------------------------------------------


@dataclass
class Stores:
    """The three services' stores, on SQLite files of their own."""

    inventory: Any  # inventory_service.store.InventoryStore
    orders: Any  # order_service.store.OrderStore
    notifier: Any  # notification_service.app.Notifier


def open_stores(data_dir: Path, provider: TracerProvider) -> Stores:
    """The stores the services open, with their schemas and seeds, under ``data_dir``."""
    from inventory_service import store as inventory
    from notification_service import app as notification
    from order_service import store as order
    from servicekit.storage import open_database

    def database(package: str, script: str, seeds: Any = ()) -> Any:
        return open_database("", data_dir, f"{package}.db", package, script, provider, seeds=seeds)

    return Stores(
        inventory=inventory.InventoryStore(
            database("inventory_service", inventory.SCHEMA, inventory.SEEDS)
        ),
        orders=order.OrderStore(database("order_service", order.SCHEMA)),
        notifier=notification.Notifier(
            provider.get_tracer(notification.SERVICE_NAME),
            database("notification_service", notification.SCHEMA),
            send_delay_ms=0,
        ),
    )


def one_order(stores: Stores, order: dict[str, Any]) -> None:
    """What the services' stores do for one order: reserve, store (and read back), notify."""

    from notification_service.app import recipient_hash
    from order_service.models import CreateOrder, OrderLine
    from order_service.store import order_total
    from servicekit.identifiers import new_order_id

    order_id = new_order_id()
    _, lines = stores.inventory.reserve(
        order_id, [(item["sku"], item["quantity"]) for item in order["items"]]
    )
    # Built, not validated: validating a body is the hop's part.
    body = CreateOrder.model_construct(
        orderId=order_id,
        userId=order["userId"],
        reservationId=order_id,
        items=[OrderLine.model_construct(sku=s, quantity=q, price=p) for s, q, p in lines],
    )
    stores.orders.create(body, order_total(body.items))
    stores.notifier.record(uuid.uuid4().hex, order_id, recipient_hash(order["email"]))


def order_statements(order: dict[str, Any]) -> list[str]:
    """The statements of one order, as their spans are named (``UPDATE stock`` ...), in order:
    one order run through stores traced into memory."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from servicekit.storage.base import TRACER_NAME

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tempfile.TemporaryDirectory(prefix="path-floor-") as data_dir:
        one_order(open_stores(Path(data_dir), provider), order)
    spans = exporter.get_finished_spans()
    return [
        s.name
        for s in spans
        if s.instrumentation_scope and s.instrumentation_scope.name == TRACER_NAME
    ]


def sql_cpu(order: dict[str, Any], orders: int, repeat: int) -> float:
    """ms of CPU per order of its store calls, untraced (median of ``repeat`` runs)."""
    from opentelemetry.trace import NoOpTracerProvider

    runs = []
    with tempfile.TemporaryDirectory(prefix="path-floor-") as data_dir:
        stores = open_stores(Path(data_dir), NoOpTracerProvider())
        for _ in range(50):  # warm-up: statement caches, imports
            one_order(stores, order)
        for _ in range(repeat):
            started = time.process_time()
            for _ in range(orders):
                one_order(stores, order)
            runs.append(1000 * (time.process_time() - started) / orders)
    return statistics.median(runs)


# --- the floor -------------------------------------------------------------------------------


def floor_ms(hop_ms: float, call_ms: float, sql_ms: float) -> float:
    """An order's parts, bare: ``HOPS`` hops, ``CALLS`` calls and its statements."""
    return HOPS * hop_ms + CALLS * call_ms + sql_ms


def multiple(untraced_ms: float, floor: float) -> float:
    """The services' untraced CPU per order as a multiple of the floor (inf for no floor)."""
    return untraced_ms / floor if floor > 0 else float("inf")


def goal_row(result: dict[str, Any], untraced_ms: float) -> str:
    """The goal's row of the benchmark's goal table (``| goal | this run | verdict |``)."""
    ratio = multiple(untraced_ms, result["floor_ms"])
    verdict = "met" if ratio <= GOAL else "**not met**"
    return (
        f"| the services' untraced CPU per order at most {GOAL:g}x the order path's floor | "
        f"{ratio:.2f}x ({untraced_ms:.2f} of {result['floor_ms']:.2f} ms) | {verdict} |"
    )


def table(result: dict[str, Any], untraced_ms: float) -> list[str]:
    """What an order's parts cost bare, and the services' untraced CPU against their sum."""
    names = ", ".join(f"`{n}`" for n in result["statement_names"])
    return [
        "| per order (CPU ms) | each | per order |",
        "| --- | ---: | ---: |",
        f"| a bare hop (uvicorn + FastAPI, the body validated) | {result['hop_ms']:.3f} | "
        f"{result['hops']} x = {result['hops'] * result['hop_ms']:.2f} |",
        f"| one client call (`Downstream` over {result.get('transport', 'its default')}, "
        f"tracing off) | {result['call_ms']:.3f} | "
        f"{result['calls']} x = {result['calls'] * result['call_ms']:.2f} |",
        *(
            f"| for comparison, one call over {name} (`HTTP_CLIENT_TRANSPORT={name}`) | "
            f"{ms:.3f} | |"
            for name, ms in result.get("call_ms_by_transport", {}).items()
            if name != result.get("transport")
        ),
        f"| SQL statements ({result['statements']}: {names}) | | {result['sql_ms']:.2f} |",
        f"| **the order path's floor** | | **{result['floor_ms']:.2f}** |",
        f"| the services' untraced CPU per order at saturation (median of rounds) | | "
        f"{untraced_ms:.2f} (**{multiple(untraced_ms, result['floor_ms']):.2f}x** the floor) |",
    ]


def measure(
    connections: int = 8,
    seconds: float = 4.0,
    warmup: float = 2.0,
    repeat: int = 3,
    orders: int = 1000,
) -> dict[str, Any]:
    """Every part, and the floor (the dict the module docstring describes)."""
    import overhead

    statements = order_statements(overhead.ORDER)
    say(f"{len(statements)} statements per order: {', '.join(statements)}")
    sql = sql_cpu(overhead.ORDER, orders, repeat)
    say(f"SQL: {sql:.3f} ms per order")
    say(f"hop and call: {repeat} x {seconds:g} s each at c={connections}")
    parts = hop_and_call(connections, seconds, warmup, repeat)
    result = {
        **parts,
        "sql_ms": sql,
        "statements": len(statements),
        "statement_names": statements,
        "hops": HOPS,
        "calls": CALLS,
        "connections": connections,
    }
    result["floor_ms"] = floor_ms(parts["hop_ms"], parts["call_ms"], sql)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("serve", help="serve one bare app (what the measurement starts)")
    one.add_argument("--port", type=int, required=True)
    one.add_argument("--downstream", help="call this bare app once per request")
    one.add_argument("--transport", default="aiohttp", help="the client's transport")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--seconds", type=float, default=4, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of wrk per app first")
    parser.add_argument("--repeat", type=int, default=3, help="measurements (medians kept)")
    parser.add_argument("--orders", type=int, default=1000, help="orders per SQL measurement")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.port, args.downstream, args.transport)
        return 0
    result = measure(args.connections, args.seconds, args.warmup, args.repeat, args.orders)
    say(
        f"hop {result['hop_ms']:.3f} ms, call {result['call_ms']:.3f} ms, "
        f"SQL {result['sql_ms']:.3f} ms ({result['statements']} statements): floor "
        f"{HOPS} x hop + {CALLS} x call + SQL = {result['floor_ms']:.2f} ms per order"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
