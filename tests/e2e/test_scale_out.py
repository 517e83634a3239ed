"""The scale-out manifests with the real binaries: tail sampling keeps every trace worth keeping.

A gateway-tier collector (otel-collector/scale-out/gateway.yaml, its own OCB build) in front of
the real Jaeger; traces are sent over OTLP with the Python SDK, with explicit timestamps so a
"slow" trace costs no waiting. See docs/scale-out.md.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from stackctl.metrics import scrape, total
from stackctl.ports import Ports
from stackctl.process import ManagedProcess
from stackctl.stack import ROOT, Stack, backend_binaries, binary_paths
from stackctl.traces import fetch_trace, wait_for_trace

DECIDED = "otelcol_processor_tail_sampling_global_count_traces_sampled"


def scale_out_binary() -> Path:
    path = binary_paths()["OTELCOL_SCALE_OUT"]
    assert path.exists(), f"{path} missing: run scripts/install_backends.sh --test-tools"
    return path


class Tiers:
    """Jaeger (from a Stack on free ports) and one gateway-tier collector feeding it."""

    def __init__(self, base: Path) -> None:
        self.stack = Stack(
            base / "run",
            base / "data",
            ports=Ports.free(),
            with_prometheus=False,
            with_browser=False,
        )
        free = self.stack.ports  # one allocation: distinct from Jaeger's ports, which it also holds
        self.otlp_port = free.otlp_grpc
        self.metrics_url = f"http://127.0.0.1:{free.collector_metrics}/metrics"
        config = ROOT / "otel-collector" / "scale-out" / "gateway.yaml"
        self.gateway = ManagedProcess(
            "gateway-collector",
            [str(scale_out_binary()), "--config", str(config)],
            f"http://127.0.0.1:{free.collector_health}/",
            self.stack.run_dir,
            {
                "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free.otlp_grpc}",
                "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{free.collector_health}",
                "OTELCOL_METRICS_HOST": "127.0.0.1",
                "OTELCOL_METRICS_PORT": str(free.collector_metrics),
                "OTELCOL_JAEGER_ENDPOINT": f"127.0.0.1:{self.stack.ports.jaeger_otlp}",
                "TAIL_DECISION_WAIT": "1s",
                "TAIL_BASELINE_PERCENT": "0",
                "TAIL_SLOW_THRESHOLD_MS": "500",
            },
        )
        self.processes = [self.stack.process("jaeger"), self.gateway]

    def send(self, duration_ms: int, status: int = 201, error: bool = False, **attrs) -> str:
        """A gateway server span with one inventory child, sent over OTLP; its trace id."""
        provider = TracerProvider(resource=Resource({"service.name": "api-gateway"}))
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{self.otlp_port}", insecure=True)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("scale-out-test")
        start = time.time_ns()
        root = tracer.start_span(
            "POST /api/orders",
            kind=SpanKind.SERVER,
            start_time=start,
            attributes={"http.response.status_code": status, **attrs},
        )
        if error:
            root.set_status(Status(StatusCode.ERROR, "out of stock"))
        with trace.use_span(root):
            child = tracer.start_span("POST /inventory/reserve", start_time=start + 1_000_000)
            child.end(end_time=start + 2_000_000)
        root.end(end_time=start + duration_ms * 1_000_000)
        provider.shutdown()
        return format(root.get_span_context().trace_id, "032x")


@pytest.fixture(scope="module")
def tiers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiers]:
    tiers = Tiers(tmp_path_factory.mktemp("scale-out"))
    try:
        for proc in tiers.processes:
            proc.start()
            proc.wait_healthy(time.monotonic() + 30)
        yield tiers
    finally:
        for proc in reversed(tiers.processes):
            proc.stop()


def test_jaeger_accepts_the_opensearch_config() -> None:
    _, jaeger = backend_binaries()
    config = ROOT / "jaeger" / "scale-out" / "config-opensearch.yaml"
    result = subprocess.run([str(jaeger), "validate", "--config", str(config)], check=False)
    assert result.returncode == 0


def test_tail_sampling_keeps_errors_slow_and_faults_and_drops_the_rest(tiers: Tiers) -> None:
    fast_ok = tiers.send(20)
    kept = {
        "error status": tiers.send(20, error=True),
        "server 5xx": tiers.send(20, status=503),
        "slow": tiers.send(900),
        "injected fault": tiers.send(20, **{"fault.injected": True}),
    }
    for reason, trace_id in kept.items():
        found = wait_for_trace(tiers.stack.jaeger_url, trace_id, {"api-gateway"}, timeout=20)
        assert len(found.spans) == 2, f"{reason}: the whole trace is kept"
    deadline = time.monotonic() + 10
    while total(scrape(tiers.metrics_url), DECIDED, sampled="false") < 1:
        assert time.monotonic() < deadline, "the fast, successful trace was never decided"
        time.sleep(0.2)
    samples = scrape(tiers.metrics_url)
    assert total(samples, DECIDED, sampled="true") == len(kept)
    assert total(samples, DECIDED, sampled="false") == 1
    assert fetch_trace(tiers.stack.jaeger_url, fast_ok) is None
