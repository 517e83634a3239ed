"""The scale-out collector tiers on loopback: gateway collectors in front of a stack's Jaeger.

A gateway is the scale-out build (``OTELCOL_SCALE_OUT``) with
otel-collector/scale-out/gateway.yaml on ports of its own; the agent is the stack's collector
with agent.yaml (``Stack(collector=AGENT)``), its gateways named by
``OTELCOL_GATEWAY_RESOLVER``. Used by tests/scale_out/ and benchmarks/scale_out.py.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import httpx

from stackctl.metrics import scrape, total
from stackctl.ports import Ports
from stackctl.process import ManagedProcess
from stackctl.stack import ROOT, binary_paths

SCALE_OUT = ROOT / "otel-collector" / "scale-out"
AGENT = ("OTELCOL_SCALE_OUT", SCALE_OUT / "agent.yaml")
# Traces a gateway has decided on, by ``sampled`` = "true" (kept) or "false" (dropped).
DECIDED = "otelcol_processor_tail_sampling_global_count_traces_sampled"


def other_ports(taken: Ports) -> Ports:
    """Free loopback ports that do not overlap ``taken``."""
    used = {getattr(taken, f.name) for f in fields(Ports)}
    while True:
        ports = Ports.free()
        if not used & {getattr(ports, f.name) for f in fields(Ports)}:
            return ports


def static_resolver(gateways: list[Gateway]) -> str:
    """``OTELCOL_GATEWAY_RESOLVER`` for a fixed list of gateways."""
    return f"{{static: {{hostnames: [{', '.join(g.endpoint for g in gateways)}]}}}}"


@dataclass
class Gateway:
    """One gateway collector; ``env`` overrides gateway.yaml's settings (TAIL_*)."""

    process: ManagedProcess
    endpoint: str  # its OTLP/gRPC receiver, host:port
    metrics_url: str

    @classmethod
    def create(
        cls,
        name: str,
        run_dir: Path,
        jaeger_otlp: str,
        taken: Ports,
        env: dict[str, str],
        otlp_endpoint: str | None = None,
    ) -> Gateway:
        """``otlp_endpoint`` defaults to 127.0.0.1 on a free port; its health and metrics are
        always on free ports of 127.0.0.1."""
        free = other_ports(taken)
        endpoint = otlp_endpoint or f"127.0.0.1:{free.otlp_grpc}"
        binary = binary_paths()["OTELCOL_SCALE_OUT"]
        process = ManagedProcess(
            name,
            [str(binary), "--config", str(SCALE_OUT / "gateway.yaml")],
            f"http://127.0.0.1:{free.collector_health}/",
            run_dir,
            {
                "OTELCOL_OTLP_GRPC_ENDPOINT": endpoint,
                "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{free.collector_health}",
                "OTELCOL_METRICS_HOST": "127.0.0.1",
                "OTELCOL_METRICS_PORT": str(free.collector_metrics),
                "OTELCOL_JAEGER_ENDPOINT": jaeger_otlp,
                **env,
            },
        )
        return cls(process, endpoint, f"http://127.0.0.1:{free.collector_metrics}/metrics")

    def decided(self, **labels: str) -> float:
        """Traces decided (kept and dropped, or as ``labels`` say); 0 while it is down."""
        try:
            return total(scrape(self.metrics_url), DECIDED, **labels)
        except httpx.HTTPError:
            return 0.0
