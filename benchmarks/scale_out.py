"""`make bench-scale-out`: the sizing figures of docs/scale-out.md, measured on this machine.

- Gateway throughput: one gateway collector (otel-collector/scale-out/gateway.yaml, baseline
  10 %, in front of Jaeger) fed pre-encoded OTLP export requests (50 traces of 10 spans each)
  over ``--streams`` concurrent gRPC calls; spans it accepted per second of wall time and per
  CPU-second of its process, and what it refused.
- Memory per held trace: a gateway whose decision wait outlasts the run holds ``--held``
  traces of 10 spans; its resident memory before and after, divided by the traces.
- OpenSearch disk per million spans: ``--orders`` orders through the four services, the
  collector and Jaeger into OpenSearch (stackctl, storage ``opensearch``); the span index,
  force-merged to one segment, divided by the spans it holds.

The results replace the text between the ``sizing`` markers in docs/scale-out.md.

    python benchmarks/scale_out.py [--seconds 20] [--streams 4] [--held 20000] [--orders 600]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stackctl.metrics import scrape, total
from stackctl.orders import order_body
from stackctl.ports import Ports
from stackctl.stack import ROOT, Stack
from stackctl.tiers import Gateway

DOC = ROOT / "docs" / "scale-out.md"
BEGIN, END = "<!-- sizing:begin -->", "<!-- sizing:end -->"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TRACES_PER_REQUEST, SPANS_PER_TRACE = 50, 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def encoded_requests(count: int) -> list[bytes]:
    """``count`` export requests of distinct traces, shaped like an order's spans."""
    out = []
    now = time.time_ns()
    for _ in range(count):
        request = ExportTraceServiceRequest()
        resource = request.resource_spans.add()
        resource.resource.attributes.add(
            key="service.name", value=AnyValue(string_value="api-gateway")
        )
        scope = resource.scope_spans.add()
        for _ in range(TRACES_PER_REQUEST):
            trace_id, root = os.urandom(16), os.urandom(8)
            for i in range(SPANS_PER_TRACE):
                span = scope.spans.add(
                    trace_id=trace_id,
                    span_id=root if i == 0 else os.urandom(8),
                    parent_span_id=b"" if i == 0 else root,
                    name="POST /api/orders" if i == 0 else "POST /inventory/reserve",
                    kind=2 if i == 0 else 3,
                    start_time_unix_nano=now + i * 1000,
                    end_time_unix_nano=now + 20_000_000,
                )
                span.attributes.add(key="http.request.method", value=AnyValue(string_value="POST"))
                span.attributes.add(key="http.response.status_code", value=AnyValue(int_value=201))
                span.attributes.add(key="url.path", value=AnyValue(string_value="/api/orders"))
        out.append(request.SerializeToString())
    return out


def send(endpoint: str, payloads: list[bytes], streams: int) -> int:
    """Send every payload (raw bytes); the number the receiver refused."""
    with grpc.insecure_channel(endpoint) as channel:
        export = channel.unary_unary(EXPORT)

        def one(payload: bytes) -> int:
            try:
                export(payload, timeout=30)
                return 0
            except grpc.RpcError:
                return 1

        with ThreadPoolExecutor(streams) as pool:
            return sum(pool.map(one, payloads))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def accepted(gateway: Gateway) -> float:
    return total(scrape(gateway.metrics_url), "otelcol_receiver_accepted_spans")


def gateway_figures(base: Path, seconds: float, streams: int, held: int) -> list[str]:
    stack = Stack(base / "run", base / "data", ports=Ports.free(), with_prometheus=False)
    jaeger = stack.process("jaeger")
    jaeger_otlp = f"127.0.0.1:{stack.ports.jaeger_otlp}"
    fast = Gateway.create("gateway-throughput", stack.run_dir, jaeger_otlp, stack.ports, {})
    holding = Gateway.create(
        "gateway-holding",
        stack.run_dir,
        jaeger_otlp,
        stack.ports,
        {"TAIL_DECISION_WAIT": "600s", "OTELCOL_MEMORY_LIMIT_MIB": "4000"},
    )
    processes = [jaeger, fast.process, holding.process]
    try:
        for proc in processes:
            proc.start()
            proc.wait_healthy(time.monotonic() + 60)
        print("encoding requests ...", flush=True)
        payloads = encoded_requests(200)
        send(fast.endpoint, payloads[:10], streams)  # warm-up
        pid = fast.process.pid()
        assert pid is not None
        spans0, cpu0, t0, refused = accepted(fast), cpu_seconds(pid), time.monotonic(), 0
        print(f"gateway throughput: {seconds:.0f} s of {streams} streams ...", flush=True)
        while time.monotonic() - t0 < seconds:
            refused += send(fast.endpoint, payloads, streams)
        wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
        spans = accepted(fast) - spans0
        lines = [
            f"- **Gateway throughput**: {spans / wall:,.0f} spans/s accepted by one gateway "
            f"({spans / cpu:,.0f} spans per CPU-second of the gateway; {refused} of "
            f"{round(spans / TRACES_PER_REQUEST / SPANS_PER_TRACE) + refused} requests refused, "
            "by its memory_limiter once the 10 s decision wait holds that many traces), "
            f"{streams} concurrent gRPC senders of {TRACES_PER_REQUEST} traces x "
            f"{SPANS_PER_TRACE} spans (the same {len(payloads)} requests round after round), "
            "baseline 10 %, sender and gateway on the same 2 cores.",
        ]
        pid = holding.process.pid()
        assert pid is not None
        time.sleep(2)
        before = rss_mib(pid)
        requests = encoded_requests(held // TRACES_PER_REQUEST)
        print(f"memory: {held} traces held ...", flush=True)
        send(holding.endpoint, requests, streams)
        time.sleep(3)
        after = rss_mib(pid)
        per_trace = (after - before) * 1024 * 1024 / held
        lines.append(
            f"- **Memory per held trace**: {per_trace / 1024:.1f} KiB per trace of "
            f"{SPANS_PER_TRACE} spans ({per_trace / SPANS_PER_TRACE:,.0f} bytes per span), from "
            f"the gateway's resident memory {before:.0f} MiB -> {after:.0f} MiB while holding "
            f"{held:,} traces undecided."
        )
        return lines
    finally:
        for proc in reversed(processes):
            proc.stop()


def opensearch_figures(orders: int) -> list[str]:
    base = Path(tempfile.mkdtemp(prefix="otel-order-stack-bench-"))
    base.chmod(0o755)  # OpenSearch runs as its own user (stackctl/opensearch.py)
    stack = Stack(
        base / "run", base / "data", ports=Ports.free(), with_prometheus=False, storage="opensearch"
    )
    try:
        stack.up(timeout=180, report=lambda line: print(f"  {line}", flush=True))
        print(f"opensearch disk: {orders} orders ...", flush=True)

        def place(_: int) -> None:
            httpx.post(f"{stack.gateway_url}/api/orders", json=order_body(), timeout=30)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(place, range(orders)))
        index = f"{stack.opensearch_url}/jaeger-jaeger-span-*"
        expected = orders * 15
        deadline = time.monotonic() + 120
        while (count := _span_count(index)) < expected and time.monotonic() < deadline:
            time.sleep(1)
        httpx.post(f"{index}/_refresh", timeout=60).raise_for_status()
        merge = httpx.post(f"{index}/_forcemerge", params={"max_num_segments": 1}, timeout=600)
        merge.raise_for_status()
        stats = httpx.get(f"{index}/_stats/store", timeout=30).json()["_all"]["primaries"]
        # _count counts spans; the index's own docs count adds one per nested tag and reference
        size, docs = stats["store"]["size_in_bytes"], _span_count(index)
        per_million = size / docs * 1e6 / 2**30
        return [
            f"- **OpenSearch disk per million spans**: {per_million:.2f} GiB (primary shards, "
            f"force-merged; {size / docs:,.0f} bytes per span over {docs:,} spans of "
            f"{orders} orders, {count:,} of {expected:,} expected seen), before index "
            "replicas: multiply by 1 + replicas."
        ]
    finally:
        stack.down(report=lambda line: None)
        shutil.rmtree(base, ignore_errors=True)


def _span_count(index: str) -> int:
    try:
        return int(httpx.get(f"{index}/_count", timeout=10).json().get("count", 0))
    except (httpx.HTTPError, ValueError):
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--held", type=int, default=20_000)
    parser.add_argument("--orders", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="otel-order-stack-bench-") as tmp:
        lines = gateway_figures(Path(tmp), args.seconds, args.streams, args.held)
    lines += opensearch_figures(args.orders)
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.machine()}"
    section = [f"Measured by `make bench-scale-out` on {stamp}:", "", *lines]
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} markers")
    head, _, rest = text.partition(BEGIN)
    DOC.write_text(head + BEGIN + "\n" + "\n".join(section) + "\n" + END + rest.partition(END)[2])
    print("\n".join(section))


if __name__ == "__main__":
    main()
