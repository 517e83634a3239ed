"""The benchmark's pinned rounds: every thread of a stack's processes goes on its core and back
on all CPUs afterwards, and the pinned throughput cost is reported beside the shared-core one
(benchmarks/overhead.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace

import pytest

from tests.bench_modules import bench_module

# A process with a second thread and a child process, all idle until killed.
THREADS = (
    "import subprocess, sys, threading, time\n"
    "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(600)\n"
)
needs_two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs 2 CPUs")


@pytest.fixture(scope="module")
def overhead() -> ModuleType:
    bench_module("span_profile")  # overhead.py imports it by name
    return bench_module("overhead")


@dataclass
class Proc:
    name: str
    process_id: int

    def pid(self) -> int:
        return self.process_id


@pytest.fixture
def processes() -> Iterator[list[tuple[int, int]]]:
    """Two processes (each with a thread and a child): their (pid, child pid)."""
    started = [
        subprocess.Popen([sys.executable, "-c", THREADS], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    pairs = [(p.pid, int(p.stdout.readline())) for p in started]
    yield pairs
    for p, (_, child) in zip(started, pairs, strict=True):
        os.kill(child, 9)
        p.kill()
        p.wait()


def affinities(pid: int) -> set[frozenset[int]]:
    """The CPU sets of every thread of ``pid``."""
    return {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")}


@needs_two_cpus
def test_pinned_puts_every_thread_and_child_on_its_core_and_back(overhead, processes) -> None:
    (service, service_child), (backend, backend_child) = processes
    stack = SimpleNamespace(
        replica_processes={"order-service": [Proc("order-service", service)]},
        processes=[Proc("jaeger", backend), Proc("order-service", service)],
    )
    cores = overhead.split_cores()
    everything = frozenset(os.sched_getaffinity(0))
    assert len(affinities(service)) == 1 and len(os.listdir(f"/proc/{service}/task")) >= 2
    with pytest.raises(RuntimeError), overhead.pinned(SimpleNamespace(stack=stack), cores):
        for pid in (service, service_child):
            assert affinities(pid) == {cores.services}
        for pid in (backend, backend_child):
            assert affinities(pid) == {cores.backends}
        raise RuntimeError("a round failed")
    for pid in (service, service_child, backend, backend_child):
        assert affinities(pid) == {everything}


def test_split_cores_gives_the_backends_the_last_cpu(overhead, monkeypatch) -> None:
    monkeypatch.setattr(overhead.os, "sched_getaffinity", lambda pid: {0, 1})
    cores = overhead.split_cores()
    assert (cores.services, cores.backends) == ({0}, {1})
    assert cores.describe() == "services on CPU 0, backends and wrk on CPU 1"
    monkeypatch.setattr(overhead.os, "sched_getaffinity", lambda pid: {0})
    assert overhead.split_cores() is None


@needs_two_cpus
def test_wrk_runs_on_the_cpus_it_is_given(overhead, monkeypatch) -> None:
    """The affinity is set in wrk's process before it starts: here the same start hook runs a
    stand-in that prints its CPUs."""
    seen = {}

    def run(argv, **kw):
        seen.update(argv=argv, **kw)
        return SimpleNamespace(stdout='{"requests": 1}\n')

    monkeypatch.setattr(overhead.subprocess, "run", run)
    overhead.wrk("http://127.0.0.1:1", 1, 1, cpus={1})
    assert seen["argv"][0] == "wrk"
    show = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
    # Popen, as subprocess.run is the stand-in here.
    with subprocess.Popen(
        show, preexec_fn=seen["preexec_fn"], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.communicate()[0].strip() == "[1]"
    overhead.wrk("http://127.0.0.1:1", 1, 1)  # the shared-core rounds: wrk as before
    assert seen["preexec_fn"] is None


def round_(overhead: ModuleType, mode: str, number: int, requests: int, p99: float = 100.0):
    wrk = {"requests": requests, "duration_us": 10e6, "p50_ms": 50.0, "p95_ms": 80.0}
    wrk |= {"p99_ms": p99, "non_2xx": 0, "socket_errors": 0}
    cpu = {"order-service": requests * 0.004, "jaeger": requests * 0.001}
    return overhead.Round(mode, 8, 10.0, wrk, cpu, 0.0, number)


def test_pinned_goal_row_gives_both_costs(overhead) -> None:
    shared = [round_(overhead, "on", 0, 700), round_(overhead, "off", 0, 1000)]
    pinned = [
        round_(overhead, "on", 0, 900),
        round_(overhead, "off", 0, 1000),
        round_(overhead, "off", 1, 1000),
        round_(overhead, "on", 1, 800),
    ]
    (row,) = overhead.pinned_goal_lines(shared, pinned)
    assert "on their own core | 15.0% (all on shared cores: 30.0%) | met |" in row
    worse = [*pinned[:2], round_(overhead, "off", 1, 1000), round_(overhead, "on", 1, 700)]
    assert (
        "20.0% (all on shared cores: 30.0%) | **not met** |"
        in overhead.pinned_goal_lines(shared, worse)[0]
    )
    assert overhead.pinned_goal_lines(shared, []) == []


def test_pinned_section_tables_throughput_latency_and_services_cpu(overhead) -> None:
    cores = overhead.Cores(frozenset({0}), frozenset({1}))
    pinned = [
        round_(overhead, "on", 0, 900, p99=120.0),
        round_(overhead, "off", 0, 1000),
    ]
    lines = overhead.pinned_lines(pinned, cores, 8, 10.0)
    assert "services get one core in both stacks" in lines[2]
    assert "| throughput (req/s) | 90.0 | 100.0 | 10.0% |" in lines
    assert "| p99 latency (ms, median of rounds) | 120.0 | 100.0 | +20.0% |" in lines
    assert "| services' CPU per order (ms) | 4.00 | 4.00 | 0.00 (0.00 to 0.00) added |" in lines
    assert overhead.pinned_lines([], cores, 8, 10.0) == []
    assert overhead.pinned_lines(pinned, None, 8, 10.0) == []


def test_the_p99_goal_is_also_shown_with_the_backends_on_their_own_core(overhead) -> None:
    shared = [round_(overhead, "on", 0, 700), round_(overhead, "off", 0, 1000)]
    light = [round_(overhead, "on", 0, 90, p99=180.0), round_(overhead, "off", 0, 100, p99=100.0)]
    pinned_light = [
        round_(overhead, "on", 0, 95, p99=140.0),
        round_(overhead, "off", 0, 100, p99=100.0),
    ]
    rows = overhead.pinned_goal_lines(shared, shared, light, pinned_light)
    assert len(rows) == 2
    assert "| +40.0% (shared cores: +80.0%) | met |" in rows[1]
    cores = overhead.Cores(frozenset({0}), frozenset({1}))
    lines = overhead.pinned_lines(pinned_light, cores, 1, 8)
    assert lines[0] == "### A single client, the collector and Jaeger on their own core"


def test_time_to_queryable_is_also_shown_with_the_backends_on_their_own_core(overhead) -> None:
    """Jaeger's storage stalls on shared cores (its compactions take the services' CPU), so the
    sustained measurement is repeated pinned, at 70% of the pinned saturated throughput."""

    def probes(seconds: list[float], orders: int) -> object:
        timed = overhead.Probes("http://jaeger", "http://gateway", 15, seconds=seconds)
        timed.trace_ids = [f"{n:032x}" for n in range(orders)]
        return timed

    shared = probes([0.5] * 18 + [6.2] * 2, 20)
    load = round_(overhead, "on", 0, 540)  # 540 requests in 10 s, + 20 timed: 56 req/s
    (row,) = overhead.pinned_freshness_row((probes([0.5] * 18 + [0.7] * 2, 20), load, 80.0), shared)
    assert "| p95 0.70 s at 56 req/s (70% of the pinned 80 req/s saturated; shared" in row
    assert row.endswith("shared cores: p95 6.20 s) | met |")
    (late,) = overhead.pinned_freshness_row((probes([1.5] * 20, 20), load, 80.0), shared)
    assert late.endswith("| **not met** |")
    assert overhead.pinned_freshness_row(None, shared) == []
