"""The two collector tiers, for real: services → agent → gateways (tail sampling) → Jaeger.

The four services export to the agent (otel-collector/scale-out/agent.yaml), which routes each
trace by id through its loadbalancing exporter to one of the gateway collectors
(gateway.yaml: keep errors, 5xx, slow and fault-injected traces, baseline 0 % here), which
write to Jaeger. That agent's resolver is the ``static`` list (every gateway on 127.0.0.1 with
a port of its own): adding or removing a gateway is a new list and an agent restart. A second
agent uses the ``dns`` resolver the Helm chart sets, against gateways on one port of several
loopback addresses and a hosts file rewritten as gateways come and go (the headless Service's
answer, as far as loopback can show it).

A trace split over two gateways would be decided on both, so "the gateways decided exactly as
many traces as were sent" is what shows that every span of a trace reached the same gateway.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servicekit.catalog import SERVICE_NAMES
from stackctl.metrics import scrape, total
from stackctl.orders import order_body
from stackctl.ports import Ports
from stackctl.process import ManagedProcess
from stackctl.stack import Stack
from stackctl.tiers import AGENT, Gateway, other_ports, static_resolver
from stackctl.traces import fetch_trace, wait_for_trace
from tests.scale_out.conftest import send_trace

CALLS = "traces_span_metrics_calls_total"
ADMIN_TOKEN = "scale-out-admin-token"
# Fault baggage acts only for a caller with the admin token: inventory-service waits 700 ms.
SLOW = {"baggage": "fault.inventory-service=latency:700", "authorization": f"Bearer {ADMIN_TOKEN}"}
ALL = set(SERVICE_NAMES)
FAILED_SERVICES = {"api-gateway", "inventory-service"}


# Longer than an order's trace including its async notification, plus the services' and the
# agent's batching (200 ms each); baseline 0 %: only the policies keep a trace.
GATEWAY_ENV = {
    "TAIL_DECISION_WAIT": "2s",
    "TAIL_BASELINE_PERCENT": "0",
    "TAIL_SLOW_THRESHOLD_MS": "500",
}


def start(gateway: Gateway) -> None:
    gateway.process.start()
    gateway.process.wait_healthy(time.monotonic() + 30)


class Tiers:
    def __init__(self, base: Path) -> None:
        self.stack = Stack(
            base / "run",
            base / "data",
            ports=Ports.free(),
            env={"ADMIN_TOKEN": ADMIN_TOKEN, "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s"},
            with_prometheus=False,
            collector=AGENT,
        )
        jaeger = f"127.0.0.1:{self.stack.ports.jaeger_otlp}"
        self.gateways = [
            Gateway.create(
                f"gateway-{i}", self.stack.run_dir, jaeger, self.stack.ports, GATEWAY_ENV
            )
            for i in (1, 2, 3)
        ]
        self.agent = self.stack.process("otel-collector")
        self.route_env(self.gateways[:2])

    @property
    def processes(self) -> list[ManagedProcess]:
        return self.stack.processes + [g.process for g in self.gateways]

    def route_env(self, gateways: list[Gateway]) -> None:
        self.agent.env["OTELCOL_GATEWAY_RESOLVER"] = static_resolver(gateways)

    def route_to(self, gateways: list[Gateway]) -> None:
        """Restart the agent with this list of gateways (graceful: its queue is flushed)."""
        self.agent.stop()
        self.route_env(gateways)
        self.agent.start()
        self.agent.wait_healthy(time.monotonic() + 30)

    def decided(self) -> list[float]:
        return [g.decided() for g in self.gateways]

    def wait_decided(self, count: float, timeout: float = 30) -> list[float]:
        """Wait until the gateways decided ``count`` traces in all; then a moment more, so a
        trace decided twice (split over two gateways) would show."""
        deadline = time.monotonic() + timeout
        while sum(self.decided()) < count:
            assert time.monotonic() < deadline, f"decided {self.decided()}, expected {count}"
            time.sleep(0.2)
        time.sleep(3)
        return self.decided()

    def place(self, sku: str = "SKU123", headers: dict[str, str] | None = None) -> str:
        url = f"{self.stack.gateway_url}/api/orders"
        response = httpx.post(url, json=order_body(sku), headers=headers, timeout=30)
        assert response.status_code == (400 if sku == "OUT-OF-STOCK" else 201), response.text
        return response.json()["traceId"]


@pytest.fixture(scope="module")
def tiers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiers]:
    tiers = Tiers(tmp_path_factory.mktemp("tiers"))
    try:
        for gateway in tiers.gateways[:2]:
            start(gateway)
        tiers.stack.up(timeout=120, report=lambda line: None)
        yield tiers
    finally:
        tiers.stack.down(report=lambda line: None)
        for gateway in tiers.gateways:
            gateway.process.stop()


@pytest.fixture(scope="module")
def orders(tiers: Tiers) -> dict[str, list[str]]:
    """Orders through the services, decided by the gateways."""
    placed = {
        "ok": [tiers.place() for _ in range(20)],
        "failed": [tiers.place("OUT-OF-STOCK") for _ in range(2)],
        "slow": [tiers.place(headers=SLOW) for _ in range(2)],
    }
    tiers.wait_decided(sum(map(len, placed.values())))
    return placed


def test_every_trace_reaches_one_gateway_whole(tiers: Tiers, orders) -> None:
    decided = tiers.decided()
    assert sum(decided) == sum(map(len, orders.values())), f"a trace decided twice: {decided}"
    assert decided[0] > 0 and decided[1] > 0, f"both gateways share the traces: {decided}"
    for trace_id in orders["slow"]:
        wait_for_trace(tiers.stack.jaeger_url, trace_id, ALL, frozenset({"send_notification"}))
    for trace_id in orders["failed"]:
        found = wait_for_trace(tiers.stack.jaeger_url, trace_id, FAILED_SERVICES)
        assert not found.orphans


def test_span_metrics_count_every_span_before_sampling(tiers: Tiers, orders) -> None:
    placed = sum(map(len, orders.values()))  # before any other test sends a trace
    url = tiers.stack.spanmetrics_url
    labels = {"service_name": "api-gateway", "span_name": "POST /api/orders"}
    deadline = time.monotonic() + 15
    while (calls := total(scrape(url), CALLS, **labels)) < placed:
        assert time.monotonic() < deadline, f"{calls} order spans counted, {placed} placed"
        time.sleep(0.5)
    assert calls == placed  # the 20 dropped orders too
    refused = total(scrape(url), CALLS, http_response_status_code="400", **labels)
    assert refused == len(orders["failed"])


def test_kept_and_dropped_traces_follow_the_policies(tiers: Tiers, orders) -> None:
    assert all(fetch_trace(tiers.stack.jaeger_url, t) is None for t in orders["ok"])
    otlp = tiers.stack.ports.otlp_grpc  # the agent's receiver, as the services use it
    before = sum(tiers.decided())
    fast_ok = send_trace(otlp, 20)
    kept = {
        "server 5xx": send_trace(otlp, 20, status=503),
        "slow": send_trace(otlp, 900),
        "injected fault": send_trace(otlp, 20, **{"fault.injected": True}),
        "error status": send_trace(otlp, 20, error=True),
    }
    tiers.wait_decided(before + 1 + len(kept))
    for reason, trace_id in kept.items():
        found = wait_for_trace(tiers.stack.jaeger_url, trace_id, {"api-gateway"}, timeout=20)
        assert len(found.spans) == 2, f"{reason}: the whole trace is kept"
    assert fetch_trace(tiers.stack.jaeger_url, fast_ok) is None


def test_a_gateway_killed_mid_run_loses_no_trace_it_should_keep(tiers: Tiers, orders) -> None:
    victim = tiers.gateways[1]
    victim.process.kill()
    try:
        failed = [tiers.place("OUT-OF-STOCK") for _ in range(16)]  # all to be kept
        deadline = time.monotonic() + 30  # the live gateway's share: decided, then stored
        while not (stored := [t for t in failed if fetch_trace(tiers.stack.jaeger_url, t)]):
            assert time.monotonic() < deadline, "the live gateway stored none of its share"
            time.sleep(0.5)
        time.sleep(4)  # the rest of that share
        stored = [t for t in failed if fetch_trace(tiers.stack.jaeger_url, t) is not None]
        assert len(stored) < len(failed), "the dead gateway's share waits in the agent"
    finally:
        start(victim)
    for trace_id in failed:
        wait_for_trace(tiers.stack.jaeger_url, trace_id, FAILED_SERVICES, timeout=30)


def test_adding_and_removing_a_gateway_rebalances(tiers: Tiers, orders) -> None:
    first, second, third = tiers.gateways
    start(third)
    tiers.route_to([first, second, third])
    before = tiers.decided()
    for _ in range(24):
        tiers.place()
    after = tiers.wait_decided(sum(before) + 24)
    added = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(added) == 24 and all(n > 0 for n in added), f"new traces per gateway: {added}"

    tiers.route_to([second, third])
    before = tiers.decided()
    for _ in range(16):
        tiers.place()
    after = tiers.wait_decided(sum(before) + 16)
    added = [a - b for a, b in zip(after, before, strict=True)]
    assert added[0] == 0 and added[1] > 0 and added[2] > 0, f"new traces per gateway: {added}"


# --- the dns resolver, as the Helm chart uses it ------------------------------------------------

RESOLVED_NAME = "otel-gateways"  # what the chart's headless Service name is to the agents


class DnsTiers:
    """A second agent whose loadbalancing exporter uses the ``dns`` resolver, as in the chart.

    Loopback stands in for a headless Service: gateways listen on the same port of different
    loopback addresses (127.0.0.2, .3, .4), and the agent runs in a mount namespace of its own
    where ``/etc/hosts`` is a file this test rewrites, so the name resolves to exactly the
    gateways "ready" at that moment. Nothing outside that namespace sees the file.
    """

    def __init__(self, tiers: Tiers) -> None:
        stack = tiers.stack
        self.hosts = stack.run_dir / "hosts"
        port = other_ports(stack.ports).otlp_grpc
        jaeger = f"127.0.0.1:{stack.ports.jaeger_otlp}"
        self.gateways = {
            address: Gateway.create(
                f"dns-gateway-{address}",
                stack.run_dir,
                jaeger,
                stack.ports,
                GATEWAY_ENV,
                otlp_endpoint=f"{address}:{port}",
            )
            for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4")
        }
        free = other_ports(stack.ports)
        self.otlp_port = free.otlp_grpc
        resolver = f'{{dns: {{hostname: {RESOLVED_NAME}, port: "{port}", interval: 1s}}}}'
        namespace = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            namespace[1:1] = ["--user", "--map-root-user"]
        self.agent = ManagedProcess(
            "dns-agent",
            [
                *namespace,
                "sh",
                "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"',
                str(self.hosts),
                str(tiers.agent.argv[0]),
                "--config",
                str(AGENT[1]),
            ],
            f"http://127.0.0.1:{free.collector_health}/",
            stack.run_dir,
            {
                "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free.otlp_grpc}",
                "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free.otlp_http}",
                "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{free.collector_health}",
                "OTELCOL_SPANMETRICS_ENDPOINT": f"127.0.0.1:{free.spanmetrics}",
                "OTELCOL_METRICS_HOST": "127.0.0.1",
                "OTELCOL_METRICS_PORT": str(free.collector_metrics),
                "OTELCOL_GATEWAY_RESOLVER": resolver,
            },
        )

    @property
    def processes(self) -> list[ManagedProcess]:
        return [self.agent, *(g.process for g in self.gateways.values())]

    def resolve_to(self, *addresses: str) -> None:
        """Rewrite the agent's /etc/hosts in place (the bind mount keeps the same file)."""
        self.hosts.write_text("".join(f"{a} {RESOLVED_NAME}\n" for a in addresses))

    def decided(self) -> list[float]:
        return [g.decided() for g in self.gateways.values()]

    def spread(self, count: int) -> list[float]:
        """Send ``count`` traces through the agent; how many each gateway decided."""
        before = self.decided()
        for _ in range(count):
            send_trace(self.otlp_port)
        deadline = time.monotonic() + 30
        while sum(self.decided()) < sum(before) + count:
            assert time.monotonic() < deadline, f"decided {self.decided()} after {before}"
            time.sleep(0.2)
        time.sleep(3)
        return [a - b for a, b in zip(self.decided(), before, strict=True)]


def test_the_dns_resolver_follows_the_gateways_it_resolves(tiers: Tiers) -> None:
    dns = DnsTiers(tiers)
    dns.resolve_to("127.0.0.2", "127.0.0.3")
    try:
        for proc in dns.processes:
            proc.start()
            proc.wait_healthy(time.monotonic() + 30)
        time.sleep(2)  # the first resolution
        first = dns.spread(30)
        assert sum(first) == 30 and first[0] > 0 and first[1] > 0 and first[2] == 0, first

        dns.resolve_to("127.0.0.2", "127.0.0.3", "127.0.0.4")  # a gateway Pod became ready
        time.sleep(7)  # Go re-reads /etc/hosts after 5 s; the resolver asks every second
        grown = dns.spread(30)
        assert sum(grown) == 30 and all(n > 0 for n in grown), grown

        dns.resolve_to("127.0.0.3", "127.0.0.4")  # one went away
        time.sleep(7)
        shrunk = dns.spread(30)
        assert sum(shrunk) == 30 and shrunk[0] == 0 and shrunk[1] > 0 and shrunk[2] > 0, shrunk
    finally:
        for proc in dns.processes:
            proc.stop()
