"""A single Kafka node (KRaft, loopback only) between a Jaeger that writes and one that stores.

The jars are the ones ``scripts/install_backends.sh --kafka`` fetched from Maven Central; the
machine's Java runs them. The node's config is written to ``<run>/kafka/server.properties`` and
its log directory, formatted once, is ``<data>/kafka``. Jaeger's own configs do the rest:
jaeger/scale-out/config-kafka-writer.yaml (OTLP in, Kafka out) and
jaeger/scale-out/config-opensearch.yaml with ``JAEGER_RECEIVERS=[kafka]`` (Kafka in, OpenSearch
out). Used by tests/scale_out/test_kafka_buffer.py; see docs/scale-out.md.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from stackctl.process import ManagedProcess


def _java(home: Path, main: str, *args: str) -> list[str]:
    return ["java", "-Xms256m", "-Xmx512m", "-cp", str(home / "lib" / "*"), main, *args]


def node(home: Path, run_dir: Path, data_dir: Path, port: int, controller_port: int):
    """The broker-and-controller process (formatted on first use), healthy once it listens."""
    if not (home / "lib").is_dir():
        raise RuntimeError(f"{home} is missing: run scripts/install_backends.sh --kafka")
    config = run_dir / "kafka" / "server.properties"
    config.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": data_dir,
        "offsets.topic.replication.factor": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "num.partitions": 1,
    }
    config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    if not (data_dir / "meta.properties").exists():
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        format_cmd = _java(
            home, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(config)
        )
        subprocess.run([*format_cmd, "--standalone"], check=True, capture_output=True)
    argv = _java(home, "kafka.Kafka", str(config))
    return ManagedProcess("kafka", argv, f"tcp://127.0.0.1:{port}", run_dir)
