"""Generate a large, realistic Jaeger JSON export of the order stack, for the analyzer benchmark.

The traces have the shape the real stack produces (see ``tests/unit/test_order_trace.py``):
the gateway's ``POST /api/orders`` server span, its httpx client spans, the downstream server
spans with their sqlite spans, ``process_order`` and the asynchronous ``send_notification``
that outlives the request. The mix includes reads, out-of-stock orders (inventory span in ERROR
with an exception event), injected latency and 503 faults (with the ``fault.*`` attributes
servicekit sets, and the compensating release), skewed clocks and lost root spans, so the
benchmark exercises every branch of the analysis, not only the happy path.

The export is written trace by trace (little memory for any size) and is deterministic for a
given ``--seed``. ``--otlp-output`` also writes the same traces as OTLP JSON Lines, the way the
collector's ``file`` exporter does: one TracesData per line, a batch of spans of several
traces, grouped by resource and scope, so a trace is often spread over two lines.

    python benchmarks/generate_export.py --spans 120000 --output bench/export.json \
        --otlp-output bench/export.otlp.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from servicekit.semconv import summarize_sql

Tags = list[dict[str, Any]]
PORTS = {
    "api-gateway": 8080,
    "inventory-service": 8081,
    "order-service": 8082,
    "notification-service": 8083,
}
SCOPES = {
    "server": ("opentelemetry.instrumentation.fastapi", "0.59b0"),
    "client": ("opentelemetry.instrumentation.httpx", "0.59b0"),
    "db": ("servicekit.storage", ""),
    "manual": ("servicekit", "0.1.0"),
}
START_US = 1_764_000_000_000_000  # 2025-11-24T16:00:00Z: a fixed epoch keeps the output stable
OUT_OF_STOCK = "insufficient stock for OUT-OF-STOCK: requested 1, available 0"


def tag(key: str, value: Any) -> dict[str, Any]:
    """A Jaeger tag, typed the way Jaeger's JSON types it."""
    if isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, int):
        kind = "int64"
    elif isinstance(value, float):
        kind = "float64"
    else:
        kind = "string"
    return {"key": key, "type": kind, "value": value}


def scope(kind: str) -> Tags:
    name, version = SCOPES[kind]
    return [tag("otel.scope.name", name), tag("otel.scope.version", version)]


def server_tags(service: str, method: str, route: str, path: str, status: int) -> Tags:
    port = PORTS[service]
    return [
        *scope("server"),
        tag("span.kind", "server"),
        tag("url.scheme", "http"),
        tag("server.address", f"127.0.0.1:{port}"),
        tag("server.port", port),
        tag("network.protocol.version", "1.1"),
        tag("url.path", path),
        tag("http.request.method", method),
        tag("user_agent.original", "python-httpx/0.28.1"),
        tag("client.address", "127.0.0.1"),
        tag("client.port", 50_000),
        tag("http.route", route),
        tag("http.response.status_code", status),
    ]


def client_tags(target: str, method: str, path: str, template: str, status: int) -> Tags:
    port = PORTS[target]
    tags = [
        *scope("client"),
        tag("span.kind", "client"),
        tag("http.request.method", method),
        tag("url.full", f"http://127.0.0.1:{port}{path}"),
        tag("url.template", template),
        tag("server.address", "127.0.0.1"),
        tag("network.peer.address", "127.0.0.1"),
        tag("server.port", port),
        tag("network.peer.port", port),
        tag("http.response.status_code", status),
        tag("network.protocol.version", "1.1"),
    ]
    if status >= 400:
        tags.append(tag("error.type", str(status)))
    return tags


def event(ts: int, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "timestamp": ts,
        "fields": [tag("event", name), *(tag(k.replace("_", "."), v) for k, v in fields.items())],
    }


@dataclass
class InjectedFault:
    kind: str
    value: str
    delay_us: int = 0

    def tags(self) -> Tags:
        return [
            tag("fault.injected", True),
            tag("fault.kind", self.kind),
            tag("fault.value", self.value),
        ]

    def log(self, ts: int) -> dict[str, Any]:
        return {
            "timestamp": ts,
            "fields": [
                tag("event", "fault.injected"),
                tag("fault.kind", self.kind),
                tag("fault.value", self.value),
                tag("fault.source", "baggage"),
            ],
        }


@dataclass
class TraceBuilder:
    """The spans of one trace. Times are µs since the epoch; a span is added once it ends."""

    rng: random.Random
    trace_id: str
    skew_us: dict[str, int] = field(default_factory=dict)
    spans: list[dict[str, Any]] = field(default_factory=list)

    def new_id(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def add(
        self,
        span_id: str,
        service: str,
        name: str,
        parent: str | None,
        start: int,
        end: int,
        tags: Tags,
        logs: list[dict[str, Any]] | None = None,
        error: str | None = None,
    ) -> None:
        """Record a span; ``error`` (even ``""``) sets status ERROR, as the OTLP translator does."""
        if error is not None:
            tags = [*tags, tag("error", True), tag("otel.status_code", "ERROR")]
            if error:
                tags.append(tag("otel.status_description", error))
        skew = self.skew_us.get(service, 0)
        refs = [{"refType": "CHILD_OF", "traceID": self.trace_id, "spanID": parent}]
        self.spans.append(
            {
                "traceID": self.trace_id,
                "spanID": span_id,
                "flags": 1,
                "operationName": name,
                "references": refs if parent else [],
                "startTime": start + skew,
                "duration": max(end - start, 1),
                "tags": [*tags, tag("internal.span.format", "otlp")],
                "logs": [{**log, "timestamp": log["timestamp"] + skew} for log in logs or []],
                "processID": f"p{list(PORTS).index(service) + 1}",
                "warnings": None,
            }
        )

    def gap(self, low: int = 100, high: int = 500) -> int:
        return self.rng.randint(low, high)

    def db(self, service: str, parent: str, start: int, statements: list[str]) -> int:
        """Sequential sqlite spans; returns when the last one ends."""
        t = start
        for statement in statements:
            t += self.gap(20, 120)
            end = t + self.gap(25, 400)
            summary = summarize_sql(statement)
            tags = [
                *scope("db"),
                tag("span.kind", "client"),
                tag("db.system.name", "sqlite"),
                tag("db.operation.name", summary.operation),
                tag("db.collection.name", summary.collection),
                tag("db.query.text", statement),
            ]
            self.add(self.new_id(), service, summary.span_name("sqlite"), parent, t, end, tags)
            t = end
        return t

    def call(
        self,
        parent: str,
        start: int,
        target: str,
        method: str,
        path: str,
        server: Any,
        template: str | None = None,
    ) -> tuple[int, int]:
        """An httpx client span around ``server(span_id, start) -> (end, status)``, named by
        the route ``template`` of ``path`` (``path`` itself when it has no variable)."""
        client_id = self.new_id()
        end, status = server(client_id, start + self.gap(200, 600))
        end += self.gap(150, 500)
        template = template or path
        tags = client_tags(target, method, path, template, status)
        error = "" if status >= 400 else None
        self.add(
            client_id, "api-gateway", f"{method} {template}", parent, start, end, tags, error=error
        )
        return end, status


def reserve(tb: TraceBuilder, out_of_stock: bool, fault: InjectedFault | None) -> Any:
    def server(parent: str, start: int) -> tuple[int, int]:
        span_id = tb.new_id()
        logs = [fault.log(start + 40)] if fault else []
        t = start + (fault.delay_us if fault else 0)
        logs.append(event(t + 80, "stock.checked", inventory_sku="SKU123", inventory_requested=2))
        statements = [
            "SELECT sku, quantity, status FROM reservations WHERE reservation_id = ?",
            "UPDATE stock SET available = available - ? WHERE sku = ? AND available >= ?",
        ]
        if out_of_stock:
            end = tb.db(
                "inventory-service",
                span_id,
                t,
                [*statements, "SELECT available FROM stock WHERE sku = ?"],
            )
            logs += [
                event(end, "stock.insufficient", inventory_sku="OUT-OF-STOCK"),
                event(
                    end + 10,
                    "exception",
                    exception_type="inventory_service.store.InsufficientStock",
                    exception_message=OUT_OF_STOCK,
                    exception_escaped="False",
                ),
            ]
            status, error = 400, OUT_OF_STOCK
        else:
            end = tb.db(
                "inventory-service",
                span_id,
                t,
                [
                    *statements,
                    "INSERT INTO reservations (reservation_id, sku, quantity) VALUES (?, ?, ?)",
                ],
            )
            logs.append(event(end, "stock.reserved", inventory_line_count=1))
            status, error = 201, None
        end += tb.gap(200, 900)
        route = "/inventory/reserve"
        tags = server_tags("inventory-service", "POST", route, route, status)
        tags += fault.tags() if fault else []
        tb.add(span_id, "inventory-service", "POST " + route, parent, start, end, tags, logs, error)
        return end, status

    return server


def release(tb: TraceBuilder) -> Any:
    def server(parent: str, start: int) -> tuple[int, int]:
        span_id = tb.new_id()
        sql = "UPDATE reservations SET status = 'released' WHERE reservation_id = ?"
        end = tb.db("inventory-service", span_id, start, [sql]) + tb.gap()
        route = "/inventory/release"
        tags = server_tags("inventory-service", "POST", route, route, 200)
        tb.add(span_id, "inventory-service", "POST " + route, parent, start, end, tags)
        return end, 200

    return server


def store_order(tb: TraceBuilder, fault: InjectedFault | None) -> Any:
    def server(parent: str, start: int) -> tuple[int, int]:
        span_id = tb.new_id()
        logs = [fault.log(start + 40)] if fault else []
        tags = server_tags("order-service", "POST", "/orders", "/orders", 201)
        if fault and fault.kind == "error":
            end = start + tb.gap(400, 1200)
            tags = server_tags("order-service", "POST", "/orders", "/orders", 503) + fault.tags()
            message = "injected fault in order-service: error 503"
            tb.add(
                span_id, "order-service", "POST /orders", parent, start, end, tags, logs, message
            )
            return end, 503
        proc_id = tb.new_id()
        proc_start = start + tb.gap(200, 500) + (fault.delay_us if fault else 0)
        statements = [
            "INSERT OR IGNORE INTO orders (order_id, user_id, reservation_id, status, total, "
            "items) VALUES (?, ?, ?, 'confirmed', ?, ?)",
            "SELECT * FROM orders WHERE order_id = ?",
        ]
        proc_end = tb.db("order-service", proc_id, proc_start, statements) + tb.gap(100, 600)
        proc_tags = [
            *scope("manual"),
            tag("order.id_hash", f"{tb.rng.getrandbits(128):032x}"),
            tag("order.item_count", 2),
            tag("order.line_count", 1),
            tag("order.total", 100.0),
            tag("customer.id", str(tb.rng.randint(1, 5000))),
            tag("order.created", True),
        ]
        tb.add(proc_id, "order-service", "process_order", span_id, proc_start, proc_end, proc_tags)
        end = proc_end + tb.gap(300, 1200)
        tags += fault.tags() if fault else []
        tb.add(span_id, "order-service", "POST /orders", parent, start, end, tags, logs)
        return end, 201

    return server


def notify(tb: TraceBuilder, fault: InjectedFault | None) -> Any:
    def server(parent: str, start: int) -> tuple[int, int]:
        span_id = tb.new_id()
        logs = [fault.log(start + 40)] if fault else []
        end = start + (fault.delay_us if fault else 0) + tb.gap(600, 1800)
        tags = server_tags("notification-service", "POST", "/notify", "/notify", 202)
        tags += fault.tags() if fault else []
        tb.add(span_id, "notification-service", "POST /notify", parent, start, end, tags, logs)
        # the background send outlives the request: 20 ms simulated mail relay
        send_id = tb.new_id()
        send_start = end + tb.gap(50, 300)
        send_end = send_start + 20_000 + tb.gap(200, 3000)
        sql = (
            "INSERT INTO notifications (notification_id, order_id, recipient_hash, status) "
            "VALUES (?, ?, ?, 'sent')"
        )
        tb.db("notification-service", send_id, send_end - 800, [sql])
        send_tags = [
            *scope("manual"),
            tag("notification.id", f"{tb.rng.getrandbits(128):032x}"),
            tag("notification.channel", "email"),
            tag("notification.recipient_hash", f"{tb.rng.getrandbits(64):016x}"),
        ]
        tb.add(
            send_id,
            "notification-service",
            "send_notification",
            span_id,
            send_start,
            send_end,
            send_tags,
        )
        return end, 202

    return server


def place_order(tb: TraceBuilder, t0: int, scenario: str) -> None:
    """``POST /api/orders``; ``scenario`` is ok, out_of_stock, slow or failing."""
    root = tb.new_id()
    faulty = tb.rng.choice(("inventory", "order", "notify")) if scenario == "slow" else ""
    delay = tb.rng.randint(250, 900)
    slow = InjectedFault("latency", str(delay), delay * 1000)
    t = t0 + tb.gap(300, 1500)
    t, status = tb.call(
        root,
        t,
        "inventory-service",
        "POST",
        "/inventory/reserve",
        reserve(tb, scenario == "out_of_stock", slow if faulty == "inventory" else None),
    )
    error = None
    if status < 400:
        order_fault = InjectedFault("error", "503") if scenario == "failing" else None
        order_fault = slow if faulty == "order" else order_fault
        t, status = tb.call(
            root, t + tb.gap(), "order-service", "POST", "/orders", store_order(tb, order_fault)
        )
        if status >= 500:
            comp = tb.new_id()
            comp_start = t + tb.gap(30, 80)
            end, _ = tb.call(
                comp,
                comp_start + tb.gap(50, 100),
                "inventory-service",
                "POST",
                "/inventory/release",
                release(tb),
            )
            tb.add(
                comp,
                "api-gateway",
                "compensate_reservation",
                root,
                comp_start,
                end + 60,
                scope("manual"),
            )
            t = end + 60
            error = "downstream order-service answered 503"
        else:
            t, _ = tb.call(
                root,
                t + tb.gap(),
                "notification-service",
                "POST",
                "/notify",
                notify(tb, slow if faulty == "notify" else None),
            )
    end = t + tb.gap(300, 1200)
    tags = server_tags("api-gateway", "POST", "/api/orders", "/api/orders", status)
    tb.add(root, "api-gateway", "POST /api/orders", None, t0, end, tags, error=error)


def read_order(tb: TraceBuilder, t0: int) -> None:
    """``GET /api/orders/{order_id}``: gateway -> order-service -> one SELECT."""
    root = tb.new_id()
    order_id = f"{tb.rng.getrandbits(128):032x}"

    def server(parent: str, start: int) -> tuple[int, int]:
        span_id = tb.new_id()
        sql = "SELECT * FROM orders WHERE order_id = ?"
        end = tb.db("order-service", span_id, start, [sql]) + tb.gap(200, 700)
        route = "/orders/{order_id}"
        tags = server_tags("order-service", "GET", route, f"/orders/{order_id}", 200)
        tb.add(span_id, "order-service", "GET " + route, parent, start, end, tags)
        return end, 200

    t, _ = tb.call(
        root,
        t0 + tb.gap(200, 800),
        "order-service",
        "GET",
        f"/orders/{order_id}",
        server,
        template="/orders/{order_id}",
    )
    route = "/api/orders/{order_id}"
    tags = server_tags("api-gateway", "GET", route, f"/api/orders/{order_id}", 200)
    tb.add(root, "api-gateway", "GET " + route, None, t0, t + tb.gap(200, 600), tags)


def processes() -> dict[str, Any]:
    return {
        f"p{i}": {
            "serviceName": service,
            "tags": [
                tag("deployment.environment.name", "bench"),
                tag("host.name", "order-stack"),
                tag("service.instance.id", f"{service}-{i:04d}"),
                tag("service.version", "0.1.0"),
                tag("telemetry.sdk.language", "python"),
                tag("telemetry.sdk.name", "opentelemetry"),
                tag("telemetry.sdk.version", "1.38.0"),
            ],
        }
        for i, service in enumerate(PORTS, start=1)
    }


def make_trace(rng: random.Random, t0: int) -> dict[str, Any]:
    """One trace of the mix: 25% reads; of all traces ~3% slow (injected latency), 5% out of
    stock, 1.5% failing with a 503; 2% with a skewed notification-service clock, 0.5% lost
    their root span."""
    trace_id = f"{rng.getrandbits(128):032x}"
    tb = TraceBuilder(rng, trace_id)
    if rng.random() < 0.02:
        tb.skew_us["notification-service"] = rng.choice((-1, 1)) * rng.randint(2_000, 40_000)
    roll = rng.random()
    if roll < 0.25:
        read_order(tb, t0)
    elif roll < 0.28:
        place_order(tb, t0, "slow")
    elif roll < 0.33:
        place_order(tb, t0, "out_of_stock")
    elif roll < 0.345:
        place_order(tb, t0, "failing")
    else:
        place_order(tb, t0, "ok")
    spans = tb.spans
    if rng.random() < 0.005:
        spans = [s for s in spans if s["references"]]  # the root never arrived
    rng.shuffle(spans)  # Jaeger promises no span order
    return {"traceID": trace_id, "spans": spans, "processes": processes(), "warnings": None}


OTLP_BATCH_SPANS = 256  # spans per file-exporter line (a batch processor's send size)
OTLP_KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_NOT_ATTRIBUTES = {  # Jaeger tags that are OTLP fields of their own
    "span.kind", "otel.status_code", "otel.status_description", "error", "otel.scope.name",
    "otel.scope.version", "internal.span.format",
}  # fmt: skip


def otlp_value(value: Any) -> dict[str, Any]:
    """An OTLP JSON AnyValue: 64-bit integers as strings, as the protobuf JSON mapping has it."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def otlp_attributes(tags: Tags) -> list[dict[str, Any]]:
    return [{"key": t["key"], "value": otlp_value(t["value"])} for t in tags]


def otlp_span(span: dict[str, Any]) -> tuple[str, tuple[str, str], dict[str, Any]]:
    """(process id, scope, the span in OTLP JSON) for one Jaeger span of :func:`make_trace`."""
    tags = {t["key"]: t["value"] for t in span["tags"]}
    refs = span["references"]
    result: dict[str, Any] = {
        "traceId": span["traceID"],
        "spanId": span["spanID"],
        "parentSpanId": refs[0]["spanID"] if refs else "",
        "flags": 257,
        "name": span["operationName"],
        "kind": OTLP_KINDS[tags.get("span.kind", "internal")],
        "startTimeUnixNano": str(span["startTime"] * 1000),
        "endTimeUnixNano": str((span["startTime"] + span["duration"]) * 1000),
        "attributes": otlp_attributes([t for t in span["tags"] if t["key"] not in _NOT_ATTRIBUTES]),
        "events": [
            {
                "timeUnixNano": str(log["timestamp"] * 1000),
                "name": next(f["value"] for f in log["fields"] if f["key"] == "event"),
                "attributes": otlp_attributes([f for f in log["fields"] if f["key"] != "event"]),
            }
            for log in span["logs"]
        ],
        "status": {},
    }
    if tags.get("otel.status_code") == "ERROR":
        result["status"] = {"code": 2, "message": tags.get("otel.status_description", "")}
    return span["processID"], (tags["otel.scope.name"], tags["otel.scope.version"]), result


class OtlpLines:
    """Writes spans as the collector's ``file`` exporter does: a TracesData per line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.batch: list[tuple[str, tuple[str, str], dict[str, Any]]] = []
        self.resources = {
            pid: {
                "attributes": otlp_attributes([tag("service.name", p["serviceName"]), *p["tags"]])
            }
            for pid, p in processes().items()
        }

    def add(self, span: dict[str, Any]) -> None:
        self.batch.append(otlp_span(span))
        if len(self.batch) >= OTLP_BATCH_SPANS:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        grouped: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = {}
        for pid, scope_key, span in self.batch:
            grouped.setdefault(pid, {}).setdefault(scope_key, []).append(span)
        resource_spans = [
            {
                "resource": self.resources[pid],
                "scopeSpans": [
                    {"scope": {"name": name, "version": version}, "spans": spans}
                    for (name, version), spans in scopes.items()
                ],
            }
            for pid, scopes in grouped.items()
        ]
        self.out.write(json.dumps({"resourceSpans": resource_spans}, separators=(",", ":")))
        self.out.write("\n")
        self.batch = []


def write_export(
    out: TextIO,
    target_spans: int,
    seed: int,
    indent: int | None,
    otlp_out: TextIO | None = None,
) -> tuple[int, int]:
    """Write ``{"data": [...]}`` one trace at a time (and the same spans as OTLP JSON Lines to
    ``otlp_out``); returns (traces, spans) written."""
    rng = random.Random(seed)
    separators = None if indent else (",", ":")
    otlp = OtlpLines(otlp_out) if otlp_out is not None else None
    out.write('{"data":[')
    traces = spans = 0
    t0 = START_US
    while spans < target_spans:
        trace = make_trace(rng, t0)
        t0 += rng.randint(5_000, 400_000)
        out.write(",\n" if traces else "\n")
        out.write(json.dumps(trace, indent=indent, separators=separators))
        if otlp is not None:
            for span in trace["spans"]:
                otlp.add(span)
        traces += 1
        spans += len(trace["spans"])
    out.write('\n],"total":0,"limit":0,"offset":0,"errors":null}\n')
    if otlp is not None:
        otlp.flush()
    return traces, spans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--spans", type=int, default=120_000, help="at least this many spans")
    parser.add_argument("--seed", type=int, default=20251124)
    parser.add_argument("--indent", type=int, default=None, help="pretty-print, like a UI save")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--otlp-output", type=Path, help="also write the traces here as OTLP JSON Lines"
    )
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as files:
        out = files.enter_context(args.output.open("w", encoding="utf-8"))
        otlp_out = None
        if args.otlp_output is not None:
            otlp_out = files.enter_context(args.otlp_output.open("w", encoding="utf-8"))
        traces, spans = write_export(out, args.spans, args.seed, args.indent, otlp_out)
    for path in (args.output, args.otlp_output):
        if path is not None:
            size_mb = path.stat().st_size / 1e6
            print(f"{path}: {traces} traces, {spans} spans, {size_mb:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
