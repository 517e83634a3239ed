"""Kafka as the ingestion buffer, for real: collector → Jaeger writer → Kafka → Jaeger → OpenSearch.

The four services and the collector (stackctl) send to a Jaeger with
jaeger/scale-out/config-kafka-writer.yaml, which puts every batch on a Kafka topic (a real
KRaft node, stackctl/kafka.py); the stack's Jaeger (config-opensearch.yaml with
``JAEGER_RECEIVERS=[kafka]``) consumes it into OpenSearch and answers queries. While that Jaeger
is down, Kafka holds the spans; when it is back they are all stored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stackctl import kafka
from stackctl.metrics import scrape, total
from stackctl.orders import order_body
from stackctl.ports import Ports
from stackctl.process import ManagedProcess
from stackctl.stack import ROOT, Stack, binary_paths
from stackctl.tiers import other_ports
from tests.scale_out.conftest import reachable_dir, wait_for_order_trace

SENT = "otelcol_exporter_sent_spans"


class Buffered:
    def __init__(self, base: Path) -> None:
        free = Ports.free()
        extra = other_ports(free)
        brokers = f"[127.0.0.1:{extra.opensearch}]"
        self.stack = Stack(
            base / "run",
            base / "data",
            ports=free,
            env={"JAEGER_RECEIVERS": "[kafka]", "KAFKA_BROKERS": brokers},
            with_prometheus=False,
            storage="opensearch",
        )
        paths = binary_paths()
        self.kafka = kafka.node(
            paths["KAFKA_HOME"],
            self.stack.run_dir,
            self.stack.data_dir / "kafka",
            extra.opensearch,
            extra.opensearch_transport,
        )
        self.writer_metrics = f"http://127.0.0.1:{extra.jaeger_metrics}/metrics"
        self.writer = ManagedProcess(
            "jaeger-kafka-writer",
            [
                str(paths["JAEGER"]),
                "--config",
                str(ROOT / "jaeger" / "scale-out" / "config-kafka-writer.yaml"),
            ],
            f"http://127.0.0.1:{extra.jaeger_health}/status",
            self.stack.run_dir,
            {
                "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free.jaeger_otlp}",
                "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{extra.jaeger_health}",
                "JAEGER_METRICS_HOST": "127.0.0.1",
                "JAEGER_METRICS_PORT": str(extra.jaeger_metrics),
                "KAFKA_BROKERS": brokers,
            },
        )

    @property
    def processes(self) -> list[ManagedProcess]:
        return [self.kafka, self.writer, *self.stack.processes]

    def written(self) -> float:
        """Spans the writer has put on the Kafka topic."""
        return total(scrape(self.writer_metrics), SENT, exporter="kafka")

    def place(self) -> tuple[str, str]:
        response = httpx.post(f"{self.stack.gateway_url}/api/orders", json=order_body(), timeout=30)
        assert response.status_code == 201, response.text
        return response.json()["traceId"], response.json()["orderId"]


@pytest.fixture(scope="module")
def buffered(request: pytest.FixtureRequest) -> Iterator[Buffered]:
    with reachable_dir(request, "otel-order-stack-kafka-") as base:
        buffered = Buffered(base)
        started: list[ManagedProcess] = []
        try:
            for proc in (buffered.kafka, buffered.writer):
                proc.start()
                started.append(proc)
                proc.wait_healthy(time.monotonic() + 60)
            buffered.stack.up(timeout=180, report=lambda line: None)
            yield buffered
        finally:
            buffered.stack.down(report=lambda line: None)
            for proc in reversed(started):
                proc.stop()


def test_orders_reach_jaeger_through_kafka(buffered: Buffered) -> None:
    placed = [buffered.place() for _ in range(3)]
    for trace_id, order_id in placed:
        wait_for_order_trace(buffered.stack.jaeger_url, trace_id, order_id, 60)
    assert buffered.written() >= 45  # 15 spans an order, all through the topic
    consumed = scrape(buffered.stack.jaeger_metrics_url)
    assert total(consumed, "otelcol_receiver_accepted_spans", receiver="kafka") >= 45


def test_kafka_holds_the_spans_while_jaeger_is_down(buffered: Buffered) -> None:
    consumer = buffered.stack.process("jaeger")
    consumer.stop()
    try:
        before = buffered.written()
        placed = [buffered.place() for _ in range(5)]
        deadline = time.monotonic() + 30
        while buffered.written() < before + 75:  # on the topic while no consumer runs
            assert time.monotonic() < deadline, f"{buffered.written() - before} spans written"
            time.sleep(0.5)
    finally:
        consumer.start()
        consumer.wait_healthy(time.monotonic() + 60)
    for trace_id, order_id in placed:
        wait_for_order_trace(buffered.stack.jaeger_url, trace_id, order_id, 60)
