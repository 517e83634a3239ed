"""The cluster tier: the Helm chart installed on a real single-node Kubernetes.

One cluster for the module (:class:`tests.cluster.cluster.Cluster`), started after the images
are built and torn down after the last test, also when a test fails or the run is interrupted
(SIGINT and SIGTERM end the session through pytest's finalizers). The chart is installed once
with :data:`TEST_VALUES` (sized for a 2-core machine); the tests run in file order.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.cluster import Cluster
from tests.cluster.images import CACHE, CHART, build_chart_images

RELEASE = "oos"
NAMESPACE = "shop"
# Sized for a 2-core node shared with the tests: one Jaeger, a small OpenSearch heap and disk,
# every trace kept at first (the upgrade test lowers the baseline), short decisions.
TEST_VALUES = (
    "postgresql.enabled=true",
    "postgresql.volumeSize=1Gi",
    "jaeger.replicas=1",
    "opensearch.heap=256m",
    "opensearch.volumeSize=1Gi",
    "opensearch.shards=1",
    "sampling.baselinePercent=100",
    "sampling.decisionWait=2s",
    "volumes.deleteWithRelease=true",
)


@contextlib.contextmanager
def interrupts_end_the_session() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like SIGINT, so the cluster's teardown runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    assert os.geteuid() == 0, "the cluster tier runs containerd and the kubelet: it needs root"
    timings: dict[str, float] = {}
    with interrupts_end_the_session():
        images = build_chart_images(CACHE / "logs")
        timings |= images.timings
        cluster = Cluster(CACHE / "run")
        try:
            cluster.up(images=[images.archive])
            cluster.local_volumes(4, size="2Gi")
            yield cluster
        finally:
            cluster.down()
            timings |= cluster.timings
            print("\ncluster tier timings (s):", {k: round(v, 1) for k, v in timings.items()})


@pytest.fixture(scope="package")
def release(cluster: Cluster) -> str:
    """The chart installed and every Pod Ready (``helm install --wait``)."""
    started = time.monotonic()
    cluster.helm(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
        "--wait", "--timeout=10m", *(f"--set={v}" for v in TEST_VALUES), timeout=700,
    )  # fmt: skip
    cluster.timings["helm install"] = time.monotonic() - started
    return RELEASE


@contextlib.contextmanager
def port_forward(cluster: Cluster, target: str, port: int) -> Iterator[str]:
    """``kubectl port-forward --address 127.0.0.1 <target> :<port>``: the local URL."""
    process = subprocess.Popen(
        [str(cluster.bins["kubectl"]), f"--kubeconfig={cluster.kubeconfig}", "-n", NAMESPACE,
         "port-forward", "--address=127.0.0.1", target, f":{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert "Forwarding from 127.0.0.1:" in line, f"port-forward {target}: {line}"
        local = int(line.split("127.0.0.1:", 1)[1].split()[0])
        yield f"http://127.0.0.1:{local}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def pods(cluster: Cluster, selector: str = f"app.kubernetes.io/instance={RELEASE}") -> list:
    out = cluster.kubectl("-n", NAMESPACE, "get", "pods", "-l", selector, "-o", "json").stdout
    return json.loads(out)["items"]


@pytest.fixture
def run_dir(cluster: Cluster) -> Path:
    return cluster.run_dir
