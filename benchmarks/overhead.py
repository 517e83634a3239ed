"""What tracing costs the order stack, whether every span arrives, and how soon it is queryable.

    make bench                                   # the defaults below, ~33 min on 2 cores
    python benchmarks/overhead.py --rounds 3 --duration 20 --sustain 60 [--no-profile]
    python benchmarks/overhead.py --levers switch-1ms,gzip   # or --levers none

Two real stacks (stackctl: Jaeger, the collector, the four services) run side by side on free
loopback ports: one with tracing fully on (exporting through the collector to Jaeger), one with
``OTEL_SDK_DISABLED=true``. wrk (``benchmarks/order.lua``) drives ``POST /api/orders`` through
the gateway, alternating the two stacks round by round (on/off, off/on, ...) so that drift in
what else the machine does hits both alike. Then, on the traced stack only:

* span delivery at sustained load (>= 60 s): spans the services finished (``/healthz``
  ``spans_ended``), the collector accepted and exported, Jaeger received and stored, and the
  spans Jaeger returns for every trace id the load produced (wrk records them);
* time to queryable: orders placed during that load, timed from the gateway's response until
  Jaeger returns the complete trace.

Besides, on the traced and untraced stacks: saturation rounds with the collector, Jaeger and
wrk on a core of their own (``--pinned-rounds``, :func:`pinned`), and a py-spy profile of the
services, native frames included (``--no-profile``, ``--profile-dir``; span_profile.py).

Results go to ``docs/benchmarks.md``, between the ``results`` markers (the text around them is
kept). The numbers are one run, side by side, on this machine; nothing here is a timed test.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import path_floor  # noqa: E402
import span_profile  # noqa: E402

from servicekit.catalog import SERVICE_NAMES as SERVICES  # noqa: E402
from servicekit.telemetry import SDK_DEFAULTS  # noqa: E402
from stackctl.metrics import JAEGER_EXPORTER, scrape, total  # noqa: E402
from stackctl.orders import order_body  # noqa: E402
from stackctl.ports import Ports  # noqa: E402
from stackctl.stack import Stack  # noqa: E402
from stackctl.traces import StoredTrace, fetch_trace  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
LUA = ROOT / "benchmarks" / "order.lua"
ORDER = order_body(price=9.5, email="bench@example.com")  # what order.lua and the probes post
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
# No fault from the caller's shell may leak into a measurement.
NO_FAULTS = {
    name: ""
    for name in (
        "FAULTS",
        "GATEWAY_FAULTS",
        "INVENTORY_FAULTS",
        "ORDER_FAULTS",
        "NOTIFICATION_FAULTS",
        "ADMIN_TOKEN",
    )
}
MODES = {"on": "tracing on", "off": "OTEL_SDK_DISABLED=true"}
# The share of the traced stack's saturated throughput at which delivery and time to queryable
# are measured (a service run near, not at, its limit).
SUSTAIN_SHARE = 0.7


@dataclass(frozen=True)
class Lever:
    """A setting tried against the current one: a third (fourth ...) traced stack in the same
    run, with ``env`` on top of the current settings."""

    name: str
    env: dict[str, str]
    what: str
    default: bool = True  # tried by a plain `make bench`; the others with --levers
    timing: bool = False  # changes when spans leave: its time to queryable is measured too


LEVERS = (
    Lever(
        "control", {}, "the current settings again (A/A control: two identical stacks)", timing=True
    ),
    Lever(
        "httpcore",
        {"HTTP_CLIENT_TRANSPORT": "httpcore"},
        "`HTTP_CLIENT_TRANSPORT=httpcore` (the previous setting: httpx's own transport)",
    ),
    Lever(
        "thread-pool",
        {"DATABASE_THREAD_POOL": "always"},
        "`DATABASE_THREAD_POOL=always` (the previous setting: SQLite calls in the thread pool)",
    ),
    Lever(
        "batch-32",
        {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "32"},
        "`OTEL_BSP_MAX_EXPORT_BATCH_SIZE=32` (shorter encoding bursts, more export calls)",
    ),
    Lever(
        "batch-128",
        {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "128"},
        "`OTEL_BSP_MAX_EXPORT_BATCH_SIZE=128`",
        default=False,
    ),
    Lever(
        "delay-100ms",
        {"OTEL_BSP_SCHEDULE_DELAY": "100"},
        "`OTEL_BSP_SCHEDULE_DELAY=100`",
        timing=True,
    ),
    Lever(
        "switch-1ms", {"SWITCH_INTERVAL_MS": "1"}, "`SWITCH_INTERVAL_MS=1` (GIL switch interval)"
    ),
    Lever(
        "gc-no-freeze",
        {"GC_FREEZE": "false"},
        "`GC_FREEZE=false` (the setting before the freeze)",
        default=False,
    ),
    Lever(
        "delay-500ms",
        {"OTEL_BSP_SCHEDULE_DELAY": "500"},
        "`OTEL_BSP_SCHEDULE_DELAY=500` (the setting before 200)",
        default=False,
        timing=True,
    ),
    Lever(
        "delay-2s",
        {"OTEL_BSP_SCHEDULE_DELAY": "2000"},
        "`OTEL_BSP_SCHEDULE_DELAY=2000`",
        default=False,
        timing=True,
    ),
    Lever(
        "gzip",
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
        "`OTEL_EXPORTER_OTLP_COMPRESSION=gzip`",
        default=False,
    ),
)


def say(line: str) -> None:
    print(f"[bench] {line}", flush=True)


# --- the machine -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0].strip(),
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def busy_seconds() -> float:
    """CPU seconds all cores spent not idle, since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int | None) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


# --- the stacks ------------------------------------------------------------------------------


@dataclass
class Bench:
    mode: str
    stack: Stack

    def cpu(self) -> dict[str, float]:
        return {p.name: process_seconds(p.pid()) for p in self.stack.processes}

    def counters(self) -> dict[str, float]:
        """Span counts along the path: services, collector in/out, Jaeger in/stored."""
        collector = scrape(self.stack.collector_metrics_url)
        jaeger = scrape(f"http://127.0.0.1:{self.stack.ports.jaeger_metrics}/metrics")
        return {
            "services_ended": sum(self.stack.spans_ended().values()),
            "collector_accepted": total(collector, "otelcol_receiver_accepted_spans"),
            "collector_refused": total(collector, "otelcol_receiver_refused_spans")
            + total(collector, "otelcol_receiver_failed_spans")
            + total(collector, "otelcol_processor_memory_limiter_refused_spans"),
            "collector_sent": total(
                collector, "otelcol_exporter_sent_spans", exporter=JAEGER_EXPORTER
            ),
            "collector_send_failed": total(collector, "otelcol_exporter_send_failed_spans")
            + total(collector, "otelcol_exporter_enqueue_failed_spans"),
            "jaeger_accepted": total(jaeger, "otelcol_receiver_accepted_spans"),
            "jaeger_stored": total(
                jaeger, "otelcol_exporter_sent_spans", exporter="jaeger_storage_exporter"
            ),
        }

    def settle(self, timeout: float = 90.0, quiet: float = 6.0) -> dict[str, float]:
        """Wait until every span the services finished is stored in Jaeger, or until no count
        has moved for ``quiet`` seconds (then whatever is missing is not coming), or timeout."""
        deadline = time.monotonic() + timeout
        last: dict[str, float] = {}
        unchanged_since = time.monotonic()
        while True:
            counts = self.counters()
            if counts != last:
                unchanged_since = time.monotonic()
            delivered = (
                counts["services_ended"]
                == counts["collector_accepted"]
                == counts["collector_sent"]
                == counts["jaeger_stored"]
            )
            if self.mode == "off" or (delivered and counts == last):
                return counts
            if time.monotonic() - unchanged_since > quiet or time.monotonic() > deadline:
                say(f"  {self.mode}: counts stopped short of full delivery: {counts}")
                return counts
            last = counts
            time.sleep(0.5)


def start(mode: str, base: Path, lever: dict[str, str] | None = None) -> Bench:
    env = {**NO_FAULTS, "OTEL_SDK_DISABLED": "true" if mode == "off" else "false", **(lever or {})}
    stack = Stack(
        run_dir=base / mode / "run",
        data_dir=base / mode / "data",
        ports=Ports.free(),
        env=env,
        with_prometheus=False,
        with_browser=False,
    )
    t0 = time.monotonic()
    stack.up(timeout=120, report=lambda line: None)
    what = MODES.get(mode) or ", ".join(f"{k}={v}" for k, v in (lever or {}).items())
    say(f"stack '{mode}' ({what}) up in {time.monotonic() - t0:.1f} s, {stack.gateway_url}")
    return Bench(mode, stack)


# --- load ------------------------------------------------------------------------------------


@dataclass
class Round:
    mode: str
    connections: int
    seconds: float
    wrk: dict[str, Any]
    cpu: dict[str, float]  # CPU seconds per process of this mode's stack, and "wrk"
    foreign_cores: float  # CPU used by processes that are not ours, in cores
    number: int = 0  # the round: its "on" and "off" runs are a pair, back to back

    @property
    def rps(self) -> float:
        return requests_per_second(self.wrk)


def requests_per_second(result: dict[str, Any]) -> float:
    """A wrk run's throughput (0 when it made no request)."""
    return result["requests"] / (result["duration_us"] / 1e6) if result.get("requests") else 0.0


def wrk(
    url: str,
    connections: int,
    seconds: float,
    ids_path: Path | None = None,
    rate: float | None = None,
    delay_ms: float = 0.0,
    cpus: frozenset[int] | set[int] | None = None,
) -> dict:
    """One wrk run; with ``rate``, held near that many requests per second by pausing each
    connection between its requests (``delay_ms`` the first pause; benchmarks/order.lua);
    with ``cpus``, wrk runs on those CPUs only."""
    env = {
        **os.environ,
        "WRK_ORDER_BODY": json.dumps(ORDER, separators=(",", ":")),
        "WRK_TRACE_IDS": str(ids_path) if ids_path else "",
        "WRK_RATE": "" if rate is None else f"{rate:.3f}",
        "WRK_CONNECTIONS": str(connections),
        "WRK_DELAY_MS": f"{delay_ms:.0f}",
    }
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"{url}/api/orders",
    ]
    affinity = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = subprocess.run(
        argv, capture_output=True, text=True, env=env, check=True, preexec_fn=affinity
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(bench: Bench, others: list[Bench], connections: int, seconds: float, **kw) -> Round:
    """One wrk run against one stack, with the CPU every process spent during it."""
    ours = [bench, *others]
    cpu0 = {b.mode: b.cpu() for b in ours}
    busy0, self0 = busy_seconds(), time.process_time()
    children0 = os.times().children_user + os.times().children_system
    result = wrk(bench.stack.gateway_url, connections, seconds, **kw)
    children = os.times().children_user + os.times().children_system - children0
    busy, own = busy_seconds() - busy0, time.process_time() - self0
    cpu1 = {b.mode: b.cpu() for b in ours}
    spent = {
        b.mode: {k: cpu1[b.mode][k] - cpu0[b.mode].get(k, 0) for k in cpu1[b.mode]} for b in ours
    }
    stack_total = sum(sum(v.values()) for v in spent.values())
    elapsed = result["duration_us"] / 1e6
    foreign = max(0.0, busy - stack_total - children - own) / elapsed
    return Round(
        bench.mode, connections, elapsed, result, {**spent[bench.mode], "wrk": children}, foreign
    )


def round_order(modes: list[str], number: int) -> list[str]:
    """The stacks' order in round ``number``: each round shifts and reverses it, so no stack
    always runs first or last."""
    order = modes[number % len(modes) :] + modes[: number % len(modes)]
    return order if number % 2 == 0 else order[::-1]


def alternate(
    benches: dict[str, Bench], rounds: int, connections: int, seconds: float
) -> list[Round]:
    results = []
    modes = list(benches)
    for number in range(rounds):
        for mode in round_order(modes, number):
            for traced in benches.values():  # no export backlog burns CPU during this run
                traced.settle()
            others = [b for m, b in benches.items() if m != mode]
            r = measure(benches[mode], others, connections, seconds)
            r.number = number
            results.append(r)
            w = r.wrk
            say(
                f"  round {number + 1}/{rounds} {mode:>10} c={connections}: {r.rps:7.1f} req/s  "
                f"p50 {w['p50_ms']:.1f} p95 {w['p95_ms']:.1f} p99 {w['p99_ms']:.1f} ms  "
                f"non-2xx {w['non_2xx']}  other load {r.foreign_cores:.2f} cores"
            )
    return results


# --- the backends on their own core --------------------------------------------------------


@dataclass(frozen=True)
class Cores:
    """Where a pinned round runs each process: the services on ``services``; the backends
    (Jaeger, the collector, their fronts) and wrk on ``backends``."""

    services: frozenset[int]
    backends: frozenset[int]

    def describe(self) -> str:
        return f"services on CPU {cpu_list(self.services)}, backends and wrk on CPU " + cpu_list(
            self.backends
        )


def cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def split_cores() -> Cores | None:
    """The last CPU this script may use for the backends and wrk, the others for the services
    (on 2 cores: CPU 0 and CPU 1); None with fewer than 2 CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return Cores(frozenset(cpus[:-1]), frozenset(cpus[-1:]))


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (an empty list when it is gone)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        tasks = Path(f"/proc/{current}/task")
        try:
            children = [
                int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()
            ]
        except OSError:
            continue
        found.append(current)
        todo += children
    return found


def set_affinity(pids: list[int | None], cpus: frozenset[int] | set[int]) -> None:
    """Put every thread of every process in ``pids`` (and their children) on ``cpus``. Threads
    started later inherit their creator's; a second pass catches those started meanwhile."""
    for _ in range(2):
        for pid in (p for root in pids if root is not None for p in process_tree(root)):
            try:
                tids = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
            except OSError:
                continue
            for tid in tids:
                with contextlib.suppress(OSError):  # the thread ended meanwhile
                    os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def pinned(bench: Bench, cores: Cores) -> Iterator[None]:
    """``bench``'s services on ``cores.services`` and its other processes on ``cores.backends``
    while the block runs; every process back on all of this script's CPUs afterwards, also
    when the block fails."""
    services = [p for procs in bench.stack.replica_processes.values() for p in procs]
    backends = [p for p in bench.stack.processes if p not in services]
    everything = os.sched_getaffinity(0)
    try:
        set_affinity([p.pid() for p in services], cores.services)
        set_affinity([p.pid() for p in backends], cores.backends)
        yield
    finally:
        set_affinity([p.pid() for p in bench.stack.processes], everything)


def pinned_rounds(
    benches: dict[str, Bench], rounds: int, connections: int, seconds: float, cores: Cores
) -> list[Round]:
    """Saturation rounds of the traced and the untraced stack, alternating as
    :func:`alternate` does, each with its stack pinned (:func:`pinned`) and wrk on the
    backends' CPU."""
    pair = {mode: benches[mode] for mode in ("on", "off")}
    results = []
    for number in range(rounds):
        for mode in round_order(list(pair), number):
            for traced in benches.values():  # no export backlog burns CPU during this run
                traced.settle()
            others = [b for m, b in benches.items() if m != mode]
            with pinned(pair[mode], cores):
                r = measure(pair[mode], others, connections, seconds, cpus=cores.backends)
            r.number = number
            results.append(r)
            w = r.wrk
            say(
                f"  pinned round {number + 1}/{rounds} {mode:>3} c={connections}: "
                f"{r.rps:7.1f} req/s  p50 {w['p50_ms']:.1f} p99 {w['p99_ms']:.1f} ms  "
                f"services {services_cpu(r):.2f} ms/order  other load {r.foreign_cores:.2f} cores"
            )
    return results


PINNED_GOAL = 0.15  # the largest throughput cost at saturation, the backends on their own core


def pinned_goal_lines(
    heavy: list[Round],
    pinned: list[Round],
    light: list[Round] | None = None,
    pinned_light: list[Round] | None = None,
) -> list[str]:
    """The goal row for the throughput cost with the backends on their own core, the
    shared-core figure beside it (none when the pinned rounds were skipped); with the pinned
    single-client rounds, the p99 and added-CPU goals measured that way too."""
    if not pinned:
        return []
    cost, shared = costs(pinned)["rps"], costs(heavy)["rps"]
    verdict = "met" if cost <= PINNED_GOAL else "**not met**"
    rows = [
        f"| tracing costs at most {PINNED_GOAL:.0%} of saturated throughput, collector and "
        f"Jaeger on their own core | {100 * cost:.1f}% (all on shared cores: "
        f"{100 * shared:.1f}%) | {verdict} |"
    ]
    if pinned_light and light:
        p99, shared_p99 = costs(pinned_light)["p99"], costs(light)["p99"]
        rows.append(
            "| the same p99 goal, collector and Jaeger on their own core (not a goal of its "
            f"own) | {100 * p99:+.1f}% (shared cores: {100 * shared_p99:+.1f}%) | "
            f"{'met' if p99 <= 0.5 else '**not met**'} |"
        )
    return rows


def pinned_freshness(
    benches: dict[str, Bench], rounds: list[Round], pace: Pace, cores: Cores, latency_ms: float
) -> tuple[Probes, Round, float]:
    """Time to queryable with the traced stack pinned (:func:`pinned`), wrk on the backends'
    CPU, paced at ``SUSTAIN_SHARE`` of the pinned rounds' saturated throughput: the sustained
    measurement as on a deployment where Jaeger's storage does not share the services' cores.
    ``latency_ms``: the pinned single-client p50, for wrk's first pause. Returns the probes, the
    load and that saturated throughput."""
    bench = benches["on"]
    idle = [b for mode, b in benches.items() if mode != "on"]
    saturated = summarise(rounds, "on")["rps"]
    target = SUSTAIN_SHARE * saturated
    for traced in idle:  # no export backlog burns CPU during this run
        traced.settle()
    with pinned(bench, cores):
        delay = paced_delay(bench, pace.connections, target, latency_ms, cores.backends)
        paced = replace(pace, rate=target - 1 / pace.every, delay_ms=delay, cpus=cores.backends)
        probes, load = freshness(bench, idle, paced)
    return probes, load, saturated


def pinned_freshness_row(fresh: tuple[Probes, Round, float] | None, shared: Probes) -> list[str]:
    """The freshness goal measured pinned, beside the shared-core figure (none when skipped)."""
    if fresh is None:
        return []
    probes, load, saturated = fresh
    p95, shared_p95 = queryable_p95(probes), queryable_p95(shared)
    rate = offered_rate(probes, load)
    return [
        "| the same time-to-queryable goal, collector and Jaeger on their own core (not a goal "
        f"of its own) | p95 {p95:.2f} s at {rate:.0f} req/s ({rate / saturated:.0%} of the "
        f"pinned {saturated:.0f} req/s saturated; shared cores: p95 {shared_p95:.2f} s) | "
        f"{'met' if p95 <= 1.0 else '**not met**'} |"
    ]


def pinned_lines(
    pinned: list[Round], cores: Cores | None, connections: int, seconds: float
) -> list[str]:
    """The pinned rounds' section: each stack's throughput, latency and services' CPU, and
    the cost (none when they were skipped)."""
    if not pinned or cores is None:
        return []
    rounds = len({r.number for r in pinned})
    lines = [
        "### "
        + ("Throughput at saturation" if connections > 1 else "A single client")
        + ", the collector and Jaeger on their own core",
        "",
        f"{rounds} more rounds of {seconds:g} s per stack at {connections} connection"
        f"{'s' if connections > 1 else ''}, the "
        f"traced and the untraced stack only, each pinned while it runs ({cores.describe()}), "
        "as on a deployment where the collector and Jaeger run elsewhere. On 2 cores the "
        "services get one core in both stacks.",
        "",
        "| | tracing on | `OTEL_SDK_DISABLED=true` | tracing costs (median of round pairs) |",
        "| --- | ---: | ---: | ---: |",
    ]
    on, off = summarise(pinned, "on"), summarise(pinned, "off")
    cost = costs(pinned)
    lines.append(
        f"| throughput (req/s) | {on['rps']:.1f} | {off['rps']:.1f} | {100 * cost['rps']:.1f}% |"
    )
    for q in ("p50", "p99"):
        lines.append(
            f"| {q} latency (ms, median of rounds) | {on[q]:.1f} | {off[q]:.1f} | "
            f"{100 * cost[q]:+.1f}% |"
        )
    svc = {m: sum(summarise(pinned, m)["cpu_ms"].get(k, 0) for k in SERVICES) for m in MODES}
    lines.append(
        f"| services' CPU per order (ms) | {svc['on']:.2f} | {svc['off']:.2f} | "
        f"{spread(added_cpus(pinned))} added |"
    )
    return [*lines, ""]


# --- span delivery and time to queryable -----------------------------------------------------


@dataclass
class Probes:
    """Orders placed during the sustained load, each timed until its trace is complete."""

    jaeger_url: str
    gateway_url: str
    expected_spans: int
    seconds: list[float] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def one(self, client: httpx.Client) -> None:
        response = client.post(f"{self.gateway_url}/api/orders", json=ORDER)
        answered = time.monotonic()
        trace_id = response.json()["traceId"]
        with self.lock:
            self.trace_ids.append(trace_id)
        deadline = answered + 30
        while time.monotonic() < deadline:
            try:
                trace = fetch_trace(self.jaeger_url, trace_id)
            except httpx.HTTPError:
                trace = None
            if trace and len(trace.spans) >= self.expected_spans and not trace.orphans:
                with self.lock:
                    self.seconds.append(time.monotonic() - answered)
                return
            time.sleep(0.05)
        with self.lock:
            self.incomplete.append(trace_id)

    def run(self, until: float, every: float) -> None:
        local = threading.local()

        def task() -> None:
            if not hasattr(local, "client"):
                local.client = httpx.Client(timeout=15)
            self.one(local.client)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = []
            while time.monotonic() < until:
                futures.append(pool.submit(task))
                time.sleep(every)
            for future in futures:
                future.result()


def calibration_trace(bench: Bench) -> StoredTrace:
    """One complete successful order's trace, read back from Jaeger once it stopped growing."""
    response = httpx.post(f"{bench.stack.gateway_url}/api/orders", json=ORDER, timeout=15)
    trace_id = response.json()["traceId"]
    bench.settle()
    trace = fetch_trace(bench.stack.jaeger_url, trace_id)
    assert trace is not None, f"calibration trace {trace_id} not in Jaeger"
    return trace


def span_floor(trace: StoredTrace, base: Path) -> dict[str, float]:
    """The SDK floor for this order's spans (benchmarks/span_floor.py, its own interpreter)."""
    path = base / "floor-trace.json"
    path.write_text(json.dumps(trace.raw))
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "span_floor.py"), str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def order_path_floor(connections: int) -> dict[str, Any]:
    """What an order's parts cost bare (benchmarks/path_floor.py, processes of its own)."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "path_floor.py"),
            "--connections",
            str(connections),
        ],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def paced_delay(
    bench: Bench,
    connections: int,
    target_rps: float,
    latency_ms: float,
    cpus: frozenset[int] | None = None,
) -> float:
    """A first per-connection pause (ms) near ``target_rps``, from one short paced run, so the
    sustained run starts close to its rate (wrk's script corrects it every second); ``cpus``:
    wrk's, as in the run it paces."""
    delay = max(0.0, 1000 * connections / target_rps - latency_ms)
    result = wrk(
        bench.stack.gateway_url,
        connections,
        6,
        rate=target_rps,
        delay_ms=delay,
        cpus=cpus,
    )
    rps = requests_per_second(result)
    return max(0.0, delay + 1000 * connections * (1 / target_rps - 1 / rps))


def count_in_jaeger(jaeger_url: str, trace_ids: list[str], budget: float) -> tuple[int, int, int]:
    """(traces checked, spans found, traces missing) for as many ids as ``budget`` seconds allow."""
    deadline = time.monotonic() + budget
    checked = spans = missing = 0

    def one(trace_id: str) -> int | None:
        if time.monotonic() > deadline:
            return -1
        trace = fetch_trace(jaeger_url, trace_id, timeout=10)
        return None if trace is None else len(trace.spans)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for found in pool.map(one, trace_ids):
            if found == -1:
                continue
            checked += 1
            if found is None:
                missing += 1
            else:
                spans += found
    return checked, spans, missing


def recent_traces(jaeger_url: str, since: float) -> set[str]:
    """Ids of the gateway's traces with a span that started after ``since`` (epoch seconds)."""
    response = httpx.get(
        f"{jaeger_url}/api/traces",
        params={
            "service": "api-gateway",
            "start": int(since * 1e6),
            "end": int((time.time() + 1) * 1e6),
            "limit": 2000,
        },
        timeout=30,
    )
    response.raise_for_status()
    return {trace["traceID"] for trace in response.json().get("data") or []}


def read_ids(prefix: Path) -> tuple[list[str], int]:
    ids, non_201 = [], 0
    for path in sorted(prefix.parent.glob(prefix.name + ".*")):
        for line in path.read_text().splitlines():
            status, _, trace_id = line.partition(" ")
            ids.append(trace_id)
            non_201 += status != "201"
    return ids, non_201


@dataclass(frozen=True)
class Pace:
    """Paced load with timed orders: the sustained run and the export-timing levers."""

    connections: int
    seconds: float
    every: float  # seconds between timed orders
    spans_per_order: int
    rate: float  # wrk's requests per second (the timed orders come on top)
    delay_ms: float  # wrk's first pause between a connection's requests
    cpus: frozenset[int] | None = None  # wrk's CPUs (a pinned run), else any


def timed_load(
    bench: Bench, idle: list[Bench], pace: Pace, ids_path: Path | None = None
) -> tuple[Probes, Round]:
    """wrk at ``pace`` against ``bench``, with an order timed to queryable every ``every`` s."""
    probes = Probes(bench.stack.jaeger_url, bench.stack.gateway_url, pace.spans_per_order)
    thread = threading.Thread(
        target=probes.run, args=(time.monotonic() + pace.seconds, pace.every), daemon=True
    )
    thread.start()
    load = measure(
        bench,
        idle,
        pace.connections,
        pace.seconds,
        ids_path=ids_path,
        rate=pace.rate,
        delay_ms=pace.delay_ms,
        cpus=pace.cpus,
    )
    thread.join()
    return probes, load


def freshness(bench: Bench, idle: list[Bench], pace: Pace) -> tuple[Probes, Round]:
    """Time to queryable alone (no delivery count)."""
    bench.settle()
    probes, load = timed_load(bench, idle, pace)
    s = probes.seconds
    say(
        f"  {bench.mode}: {load.rps:.1f} req/s; queryable p50 {quantile(s, 0.5):.2f} s, "
        f"p95 {quantile(s, 0.95):.2f} s"
        if s
        else f"  {bench.mode}: no timed order completed"
    )
    return probes, load


def queryable_p95(probes: Probes) -> float:
    """The timed orders' p95 time to queryable (s); infinite when none completed."""
    return quantile(probes.seconds, 0.95) if probes.seconds else float("inf")


def offered_rate(probes: Probes, load: Round) -> float:
    """Orders per second during paced load: wrk's and the timed ones."""
    return (load.wrk["requests"] + len(probes.trace_ids)) / load.seconds


def freshness_table(rows: list[tuple[str, Probes, Round]]) -> list[str]:
    lines = [
        "| traced stack | load (req/s, with the timed orders) | timed orders | p50 (s) | p95 (s) "
        "| max (s) | not complete in 30 s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for what, probes, load in rows:
        s = probes.seconds
        rate = offered_rate(probes, load)
        cells = f"{quantile(s, 0.5):.2f} | {quantile(s, 0.95):.2f} | {max(s):.2f}" if s else "| |"
        timed, stuck = len(probes.trace_ids), len(probes.incomplete)
        lines.append(f"| {what} | {rate:.1f} | {timed} | {cells} | {stuck} |")
    return lines


def sustained(bench: Bench, idle: list[Bench], base: Path, pace: Pace) -> dict[str, Any]:
    before = bench.settle()
    healthz0 = bench.stack.spans_ended()
    ids_prefix = base / "trace-ids"
    say(
        f"sustained load {pace.seconds:.0f} s at c={pace.connections} paced to {pace.rate:.0f} "
        f"req/s (first pause {pace.delay_ms:.0f} ms) on the traced stack, an order timed to "
        f"queryable every {pace.every:g} s (a complete order is {pace.spans_per_order} spans)"
    )
    probes, load = timed_load(bench, idle, pace, ids_path=ids_prefix)
    load_ended = time.time()
    say(f"  load: {load.rps:.1f} req/s, p50 {load.wrk['p50_ms']:.1f} ms; waiting for delivery")
    settle_started = time.monotonic()
    after = bench.settle(timeout=180)
    settled_in = time.monotonic() - settle_started
    healthz1 = bench.stack.spans_ended()
    delta = {k: after[k] - before[k] for k in after}
    wrk_ids, non_201 = read_ids(ids_prefix)
    trace_ids = wrk_ids + probes.trace_ids
    # wrk stops with requests in flight: the services finish them, but wrk never reads their
    # responses (nor their trace ids). Find those traces in Jaeger by time instead.
    in_flight = recent_traces(bench.stack.jaeger_url, since=load_ended - 2) - set(trace_ids)
    trace_ids += sorted(in_flight)
    say(f"  delivered: {delta}; counting spans of {len(trace_ids)} traces in Jaeger")
    checked, in_jaeger, missing = count_in_jaeger(bench.stack.jaeger_url, trace_ids, budget=300)
    return {
        "load": load,
        "spans_per_order": pace.spans_per_order,
        "delta": delta,
        "per_service": {k: healthz1[k] - healthz0[k] for k in SERVICES},
        "settled_in": settled_in,
        "traces": len(trace_ids),
        "in_flight": len(in_flight),
        "non_201": non_201,
        "checked": checked,
        "jaeger_spans": in_jaeger,
        "missing_traces": missing,
        "probes": probes,
    }


# --- profile (optional) ----------------------------------------------------------------------


def under_load(bench: Bench, connections: int, seconds: float, run: Any) -> tuple[Any, float]:
    """``run()``'s result, called 2 s into a saturating wrk run that outlasts it by 2 s when it
    takes ``seconds``, and wrk's requests per second."""
    result: dict[str, Any] = {}
    load = threading.Thread(
        target=lambda: result.update(wrk(bench.stack.gateway_url, connections, seconds + 4)),
        daemon=True,
    )
    load.start()
    time.sleep(2)
    found = run()
    load.join()
    return found, requests_per_second(result)


def sampled(
    bench: Bench, connections: int, seconds: float, native: bool, keep: Path | None
) -> tuple[Any, float]:
    """py-spy samples of a stack's services under load, per row, and the orders served while
    the Python-only pass ran; with ``native``, its rows split by a second pass with native
    frames, under a load of its own (span_profile.refine). ``keep``: where to leave the raw
    profiles, ``python/<service>.txt`` and ``native/<service>.txt``."""
    pids = {name: bench.stack.process(name).pid() for name in SERVICES}
    pids = {k: v for k, v in pids.items() if v is not None}
    found, rps = under_load(
        bench,
        connections,
        seconds,
        lambda: span_profile.record(pids, seconds, keep=keep and keep / "python"),
    )
    say(f"  {bench.mode}: {rps:.1f} req/s while sampled")
    if native and found:
        moved, native_rps = under_load(
            bench,
            connections,
            seconds,
            lambda: span_profile.record_moves(pids, seconds, keep=keep and keep / "native"),
        )
        say(f"  {bench.mode}: {native_rps:.1f} req/s while sampled with native frames")
        found = span_profile.refine(found, moved)
    return found, rps * seconds


def profile(
    benches: dict[str, Bench],
    connections: int,
    seconds: float,
    native: bool = True,
    keep: Path | None = None,
) -> list[str]:
    """py-spy the services of the traced and the untraced stack (benchmarks/span_profile.py);
    ``keep``: a directory for the raw profiles, ``on/python/<service>.txt``, ``on/native/...``,
    ``off/...``."""
    if span_profile.py_spy() is None:
        say("--profile: py-spy is not on PATH (it is in the dev dependencies); skipped")
        return []
    how = "py-spy --gil, split by a --native pass" if native else "py-spy --gil"
    say(f"profile: {how} on each service, {seconds:g} s per pass and stack at c={connections}")
    traced, on_orders = sampled(benches["on"], connections, seconds, native, keep and keep / "on")
    untraced, off_orders = sampled(
        benches["off"], connections, seconds, native, keep and keep / "off"
    )
    if not traced or not untraced or not on_orders or not off_orders:
        say("--profile: py-spy could not sample the services (ptrace not permitted?); skipped")
        return []
    if keep:
        say(f"  raw profiles in {keep}")
    return [
        "",
        f"#### Where the services spend it ({how}, {connections} connections, GIL ms per order)",
        "",
        *span_profile.table(traced, untraced, (on_orders, off_orders)),
    ]


# --- report ----------------------------------------------------------------------------------


def pct(new: float, old: float) -> str:
    return f"{100 * (new - old) / old:+.1f}%" if old else "n/a"


def summarise(rounds: list[Round], mode: str) -> dict[str, float]:
    mine = [r for r in rounds if r.mode == mode]
    requests = sum(r.wrk["requests"] for r in mine)
    seconds = sum(r.seconds for r in mine)
    return {
        "rps": requests / seconds,
        "requests": requests,
        "non_2xx": sum(r.wrk["non_2xx"] + r.wrk["socket_errors"] for r in mine),
        **{q: statistics.median(r.wrk[f"{q}_ms"] for r in mine) for q in ("p50", "p95", "p99")},
        "cpu_ms": {  # CPU milliseconds per order, per process
            name: 1000 * sum(r.cpu.get(name, 0) for r in mine) / requests
            for name in sorted({k for r in mine for k in r.cpu})
        },
        "foreign": max(r.foreign_cores for r in mine),
    }


def paired(rounds: list[Round], value: Any, a: str = "on", b: str = "off") -> float:
    """Median over the rounds of value(a) / value(b) - 1, each pair run in the same round:
    drift in the machine's other load mostly cancels within a pair."""
    ratios = []
    for number in sorted({r.number for r in rounds}):
        pair = {r.mode: r for r in rounds if r.number == number}
        if a in pair and b in pair and value(pair[b]):
            ratios.append(value(pair[a]) / value(pair[b]) - 1)
    return statistics.median(ratios) if ratios else float("nan")


def costs(rounds: list[Round], a: str = "on", b: str = "off") -> dict[str, float]:
    """What ``a`` costs against ``b``, as the median of the per-round pairs (positive: worse)."""
    result = {"rps": -paired(rounds, lambda r: r.rps, a, b)}
    for q in ("p50", "p95", "p99"):
        result[q] = paired(rounds, lambda r, q=q: r.wrk[f"{q}_ms"], a, b)
    return result


def services_cpu(round_: Round) -> float:
    """CPU milliseconds per order of the four services in one round."""
    return 1000 * sum(round_.cpu.get(name, 0) for name in SERVICES) / round_.wrk["requests"]


def mode_cpu(rounds: list[Round], mode: str) -> float:
    """The four services' CPU milliseconds per order on one stack: the median of its rounds
    (NaN when it had none)."""
    mine = [services_cpu(r) for r in rounds if r.mode == mode]
    return statistics.median(mine) if mine else float("nan")


def untraced_cpu(rounds: list[Round]) -> float:
    """The services' CPU per order on the untraced stack (ms): the median of its rounds."""
    return mode_cpu(rounds, "off")


def added_cpus(rounds: list[Round], mode: str = "on") -> list[float]:
    """The services' CPU per order that tracing adds (ms) in each round: ``mode``'s minus the
    untraced stack's, from the same round."""
    diffs = []
    for number in sorted({r.number for r in rounds}):
        pair = {r.mode: r for r in rounds if r.number == number}
        if mode in pair and "off" in pair:
            diffs.append(services_cpu(pair[mode]) - services_cpu(pair["off"]))
    return diffs


def added_cpu(rounds: list[Round], mode: str = "on") -> float:
    """The median over the rounds of :func:`added_cpus`."""
    diffs = added_cpus(rounds, mode)
    return statistics.median(diffs) if diffs else float("nan")


def spread(values: list[float]) -> str:
    """``median (min-max)`` of per-round figures: how much the rounds disagree."""
    if not values:
        return "n/a"
    return f"{statistics.median(values):.2f} ({min(values):.2f} to {max(values):.2f})"


def comparison_table(rounds: list[Round]) -> list[str]:
    on, off = summarise(rounds, "on"), summarise(rounds, "off")
    cost = costs(rounds)
    lines = [
        "| | tracing on | `OTEL_SDK_DISABLED=true` | tracing costs (pooled) | "
        "tracing costs (median of round pairs) |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| throughput (req/s) | {on['rps']:.1f} | {off['rps']:.1f} | "
        f"{100 * (1 - on['rps'] / off['rps']):.1f}% | {100 * cost['rps']:.1f}% |",
    ]
    for q in ("p50", "p95", "p99"):
        lines.append(
            f"| {q} latency (ms, median of rounds) | {on[q]:.1f} | {off[q]:.1f} | "
            f"{pct(on[q], off[q])} | {100 * cost[q]:+.1f}% |"
        )
    lines.append(
        f"| requests (non-2xx or socket errors) | {on['requests']} ({on['non_2xx']}) | "
        f"{off['requests']} ({off['non_2xx']}) | | |"
    )
    return lines


def rounds_table(rounds: list[Round]) -> list[str]:
    lines = [
        "| round | stack | req/s | p50 ms | p95 ms | p99 ms | other processes' CPU (cores) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rounds:
        lines.append(
            f"| {r.number + 1} | {r.mode} | {r.rps:.1f} | {r.wrk['p50_ms']:.1f} | "
            f"{r.wrk['p95_ms']:.1f} | {r.wrk['p99_ms']:.1f} | {r.foreign_cores:.2f} |"
        )
    return lines


def cpu_table(rounds: list[Round]) -> list[str]:
    on, off = summarise(rounds, "on")["cpu_ms"], summarise(rounds, "off")["cpu_ms"]
    names = [*SERVICES, "otel-collector", "jaeger", "wrk"]
    lines = [
        "| process | tracing on | off | difference |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in names:
        a, b = on.get(name, 0), off.get(name, 0)
        lines.append(f"| {name} | {a:.2f} | {b:.2f} | {round(a - b, 2) + 0.0:+.2f} |")
    services_on = sum(on.get(n, 0) for n in SERVICES)
    services_off = sum(off.get(n, 0) for n in SERVICES)
    all_on = sum(on.get(n, 0) for n in names if n != "wrk")
    all_off = sum(off.get(n, 0) for n in names if n != "wrk")
    lines.append(
        f"| **the four services** | {services_on:.2f} | {services_off:.2f} | "
        f"{services_on - services_off:+.2f} ({pct(services_on, services_off)}) |"
    )
    lines.append(
        f"| **the whole stack** | {all_on:.2f} | {all_off:.2f} | "
        f"{all_on - all_off:+.2f} ({pct(all_on, all_off)}) |"
    )
    return lines


def goal_lines(
    floor: dict[str, float],
    heavy: list[Round],
    light: list[Round],
    delivery: dict[str, Any],
    path: dict[str, Any] | None = None,
) -> list[str]:
    """The goals of the tracing-cost work, each with this run's figure, and with ``path`` (the
    order path's floor) the services' untraced CPU against it."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    ratio = max(added_cpu(heavy), added_cpu(light)) / floor["floor_ms"]
    p99 = costs(light)["p99"]
    load: Round = delivery["load"]
    p95 = queryable_p95(delivery["probes"])
    rate = offered_rate(delivery["probes"], load)
    share = rate / delivery["saturated"]
    return [
        "| goal | this run | |",
        "| --- | --- | --- |",
        f"| services' added CPU per order at most 1.5x the SDK floor | {ratio:.2f}x (the larger "
        f"of saturation and one client) | {verdict(ratio <= 1.5)} |",
        f"| tracing adds at most +50% to the single-client p99 | {100 * p99:+.1f}% | "
        f"{verdict(p99 <= 0.5)} |",
        f"| complete in Jaeger within 1 s at p95, at 70% of saturated throughput | p95 "
        f"{p95:.2f} s at {rate:.0f} req/s ({share:.0%} of the {delivery['saturated']:.0f} "
        f"req/s saturated) | {verdict(p95 <= 1.0)} |",
        *([path_floor.goal_row(path, untraced_cpu(heavy))] if path else []),
    ]


def floor_lines(floor: dict[str, float], heavy: list[Round], light: list[Round]) -> list[str]:
    f = floor["floor_ms"]
    sat, one = added_cpu(heavy), added_cpu(light)
    return [
        f"Measured in this run by `benchmarks/span_floor.py`: the {floor['spans']:.0f} spans of "
        "one order placed on the traced stack (read back from Jaeger), replayed through the same "
        "SDK with nothing else, and OTLP-encoded as the exporter does.",
        "",
        "| per order (CPU ms) | |",
        "| --- | ---: |",
        f"| SDK floor: create and end the spans | {floor['create_ms']:.2f} |",
        f"| SDK floor: OTLP-encode them | {floor['encode_ms']:.2f} |",
        f"| **SDK floor** | **{f:.2f}** |",
        f"| services' added CPU at saturation (median of round pairs) | {sat:.2f} "
        f"(**{sat / f:.2f}x** the floor) |",
        f"| services' added CPU for a single client (median of round pairs) | {one:.2f} "
        f"(**{one / f:.2f}x** the floor) |",
    ]


def path_lines(path: dict[str, Any] | None, heavy: list[Round]) -> list[str]:
    """The order path's floor section (none when it was skipped)."""
    if path is None:
        return []
    return [
        "",
        "### What an order's parts cost bare: the order path's floor",
        "",
        f"Measured in this run by `benchmarks/path_floor.py`, in processes of its own, tracing "
        f"off: a bare uvicorn + FastAPI app and the same app making one `Downstream` call, each "
        f"driven by wrk at {path['connections']} connections; the statements of one order "
        "through the services' stores on SQLite.",
        "",
        *path_floor.table(path, untraced_cpu(heavy)),
    ]


def levers_table(heavy: list[Round], light: list[Round], levers: list[Lever]) -> list[str]:
    """Each lever's stack against the current settings' stack, pairs from the same rounds."""
    lines = [
        "| traced stack | services' CPU per order, saturation (ms) | added CPU per order, "
        "saturation (ms; median, rounds' range) | added CPU per order, 1 client (ms) | "
        "throughput at saturation vs current | p99, 1 client, vs current | p99, 1 client, vs "
        "untraced |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| current settings | {mode_cpu(heavy, 'on'):.2f} | {spread(added_cpus(heavy))} | "
        f"{spread(added_cpus(light))} | | | {100 * costs(light)['p99']:+.1f}% |",
    ]
    for lever in levers:
        name = lever.name
        rps = paired(heavy, lambda r: r.rps, name, "on")
        p99 = paired(light, lambda r: r.wrk["p99_ms"], name, "on")
        lines.append(
            f"| {lever.what} | {mode_cpu(heavy, name):.2f} | {spread(added_cpus(heavy, name))} | "
            f"{spread(added_cpus(light, name))} | "
            f"{100 * rps:+.1f}% | {100 * p99:+.1f}% | "
            f"{100 * costs(light, name, 'off')['p99']:+.1f}% |"
        )
    return lines


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def delivery_lines(result: dict[str, Any]) -> list[str]:
    d = result["delta"]
    created = d["services_ended"]
    lost = created - d["jaeger_stored"]
    load: Round = result["load"]
    lines = [
        f"{load.seconds:.0f} s at {load.connections} connections, paced to {SUSTAIN_SHARE:.0%} of "
        f"the saturated throughput: {load.wrk['requests']} orders "
        f"by wrk ({load.rps:.1f} req/s, p50 {load.wrk['p50_ms']:.1f} ms, "
        f"{result['non_201']} not 201) plus {len(result['probes'].trace_ids)} timed orders; "
        f"a complete order is {result['spans_per_order']} spans. Counts are deltas over the run, "
        f"read once everything had settled ({result['settled_in']:.1f} s after the load).",
        "",
        "| stage | spans | of created |",
        "| --- | ---: | ---: |",
    ]
    for label, key in (
        ("created by the services (`/healthz` `spans_ended`)", "services_ended"),
        ("accepted by the collector", "collector_accepted"),
        (f"exported by the collector to Jaeger (`{JAEGER_EXPORTER}`)", "collector_sent"),
        ("accepted by Jaeger's OTLP receiver", "jaeger_accepted"),
        ("written to Jaeger's storage (Badger)", "jaeger_stored"),
    ):
        ratio = d[key] / created if created else 0
        lines.append(f"| {label} | {d[key]:.0f} | {ratio:.4f} |")
    ratio = result["jaeger_spans"] / created if created else 0
    lines.append(
        f"| returned by Jaeger's query API for the {result['checked']} of {result['traces']} "
        f"trace ids checked ({result['in_flight']} of them in flight when wrk stopped, found "
        f"by time) | {result['jaeger_spans']} | {ratio:.4f} |"
    )
    per = ", ".join(f"{k} {v}" for k, v in result["per_service"].items())
    lines += [
        "",
        f"Spans per service: {per}. Refused or failed in the collector: "
        f"{d['collector_refused'] + d['collector_send_failed']:.0f}; traces missing in Jaeger: "
        f"{result['missing_traces']}. **Lost: {lost:.0f} spans "
        f"(delivery ratio {d['jaeger_stored'] / created if created else 0:.4f}).**",
    ]
    return lines


def queryable_lines(probes: Probes) -> list[str]:
    s = probes.seconds
    if not s:
        return ["No timed order became complete in Jaeger within 30 s."]
    default_delay = SDK_DEFAULTS["OTEL_BSP_SCHEDULE_DELAY"]
    schedule_delay = os.environ.get("OTEL_BSP_SCHEDULE_DELAY", default_delay)
    return [
        f"{len(s)} orders placed during the sustained load, polled every 50 ms from the gateway's "
        f"response until Jaeger returned all their spans: **p50 {quantile(s, 0.5):.2f} s, "
        f"p95 {quantile(s, 0.95):.2f} s**, max {max(s):.2f} s; "
        f"{len(probes.incomplete)} not complete within 30 s. (Export settings: "
        f"`OTEL_BSP_SCHEDULE_DELAY` {schedule_delay} ms in the "
        f"services, the collector's batch timeout "
        f"{os.environ.get('OTELCOL_BATCH_TIMEOUT', '200ms')}, Jaeger's batch 100 ms.)"
    ]


def write_doc(section: list[str], doc: Path = DOC, begin: str = BEGIN, end: str = END) -> None:
    """Put ``section`` between the ``begin`` and ``end`` markers of ``doc`` (added at its end
    when missing), keeping the text around them."""
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text = text.rstrip() + f"\n\n{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    doc.write_text(head + begin + "\n" + "\n".join(section).rstrip() + "\n" + end + tail)


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per stack")
    parser.add_argument("--duration", type=float, default=12, help="seconds per round")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (saturating)")
    parser.add_argument("--light-rounds", type=int, default=4, help="rounds at 1 connection")
    parser.add_argument(
        "--pinned-rounds",
        type=int,
        default=4,
        help="saturation rounds of the traced and untraced stacks with the collector, Jaeger "
        "and wrk on a core of their own (0: skip; default: %(default)s)",
    )
    parser.add_argument("--sustain", type=float, default=60, help="seconds of sustained load")
    parser.add_argument("--probe-every", type=float, default=0.5, help="seconds between probes")
    parser.add_argument(
        "--freshness",
        type=float,
        default=20,
        help="seconds of paced load per export-timing lever, for its time to queryable",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="py-spy the traced services: where their tracing CPU goes (default: on)",
    )
    parser.add_argument(
        "--profile-native",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="split the profile's rows by a second pass with C frames (py-spy --native: "
        "garbage collection, GIL hand-offs, syscalls; default: on)",
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        help="keep the raw py-spy profiles here (on/python/<service>.txt, on/native/..., off/...)",
    )
    parser.add_argument(
        "--levers",
        default=",".join(lever.name for lever in LEVERS if lever.default),
        help="settings tried against the current ones, comma-separated, 'all' or 'none' "
        f"(known: {', '.join(lever.name for lever in LEVERS)}; default: %(default)s)",
    )
    parser.add_argument(
        "--no-path-floor",
        action="store_true",
        help="skip the order path's floor (benchmarks/path_floor.py, about a minute)",
    )
    parser.add_argument("--no-doc", action="store_true", help=f"do not update {DOC.name}")
    args = parser.parse_args()
    by_name = {lever.name: lever for lever in LEVERS}
    wanted = [n.strip() for n in args.levers.split(",") if n]
    wanted = {"none": [], "all": list(by_name)}.get(args.levers, wanted)
    if unknown := [n for n in wanted if n not in by_name]:
        parser.error(f"unknown lever(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    levers = [by_name[n] for n in wanted]
    if shutil.which("wrk") is None:
        print("wrk is not installed: scripts/install_backends.sh --bench-tools", file=sys.stderr)
        return 2
    if args.sustain < 60:
        say(f"note: --sustain {args.sustain:g} is below the 60 s the span-delivery check asks for")

    info = machine()
    light_seconds = max(8.0, args.duration * 2 / 3)  # a single-client round, shared or pinned
    load_before = loadavg()
    say(
        f"{info['nproc']} cores ({info['cpu_model']}), load average {load_before}; "
        f"{args.rounds} rounds x {args.duration:g} s per stack at c={args.connections}; "
        f"{2 + len(levers)} stacks (on, off{''.join(', ' + lever.name for lever in levers)})"
    )
    started = datetime.now(UTC)
    base = Path(tempfile.mkdtemp(prefix="otel-bench-"))
    benches: dict[str, Bench] = {}
    try:
        for mode in ("on", "off"):
            benches[mode] = start(mode, base)
        for lever in levers:
            benches[lever.name] = start(lever.name, base, lever.env)
        calibration = calibration_trace(benches["on"])
        floor = span_floor(calibration, base)
        say(
            f"SDK floor for the {floor['spans']} spans of one order: {floor['floor_ms']:.2f} ms "
            f"of CPU (create {floor['create_ms']:.2f}, encode {floor['encode_ms']:.2f})"
        )
        path = None
        if not args.no_path_floor:
            say("the order path's floor: a bare hop, a client call, an order's statements")
            path = order_path_floor(args.connections)
            say(
                f"order path's floor: {path['floor_ms']:.2f} ms of CPU ({path['hops']} x hop "
                f"{path['hop_ms']:.3f} + {path['calls']} x call {path['call_ms']:.3f} + "
                f"{path['statements']} statements {path['sql_ms']:.3f})"
            )
        say("warm-up: 5 s per stack")
        for bench in benches.values():
            wrk(bench.stack.gateway_url, args.connections, 5)
        say(f"saturating load, c={args.connections}")
        heavy = alternate(benches, args.rounds, args.connections, args.duration)
        say("light load, c=1")
        light = alternate(benches, args.light_rounds, 1, light_seconds)
        cores = split_cores()
        pinned_: list[Round] = []
        pinned_light: list[Round] = []
        if args.pinned_rounds and cores is None:
            say("pinned rounds: fewer than 2 CPUs; skipped")
        elif args.pinned_rounds and cores is not None:
            say(f"saturating load, c={args.connections}, pinned: {cores.describe()}")
            pinned_ = pinned_rounds(
                benches, args.pinned_rounds, args.connections, args.duration, cores
            )
            say("light load, c=1, pinned")
            pinned_light = pinned_rounds(benches, args.pinned_rounds, 1, light_seconds, cores)
        saturated = summarise(heavy, "on")["rps"]
        target = SUSTAIN_SHARE * saturated
        say(f"pacing wrk to {target:.0f} req/s ({SUSTAIN_SHARE:.0%} of {saturated:.0f})")
        delay = paced_delay(benches["on"], args.connections, target, summarise(light, "on")["p50"])
        idle = [b for mode, b in benches.items() if mode != "on"]
        pace = Pace(
            args.connections,
            args.sustain,
            args.probe_every,
            len(calibration.spans),
            target - 1 / args.probe_every,  # the timed orders come on top of wrk's
            delay,
        )
        delivery = sustained(benches["on"], idle, base, pace)
        delivery["saturated"] = saturated
        timing = [lever for lever in levers if lever.timing]
        if timing:
            say(f"time to queryable on the export-timing levers, {args.freshness:g} s each")
        fresh = [("current settings", delivery["probes"], delivery["load"])]
        short = replace(pace, seconds=args.freshness)
        for lever in timing:
            others = [b for mode, b in benches.items() if mode != lever.name]
            fresh.append((lever.what, *freshness(benches[lever.name], others, short)))
        pinned_fresh = None
        if pinned_ and cores is not None:
            say(f"time to queryable, pinned: {pace.seconds:g} s of paced load")
            latency = summarise(pinned_light, "on")["p50"]
            pinned_fresh = pinned_freshness(benches, pinned_, pace, cores, latency)
        profile_table = (
            profile(benches, args.connections, 15, args.profile_native, args.profile_dir)
            if args.profile
            else []
        )
    finally:
        for bench in benches.values():
            bench.stack.down(report=lambda line: None)
        shutil.rmtree(base, ignore_errors=True)
    load_after = loadavg()

    foreign = max(
        r.foreign_cores for r in [*heavy, *light, *pinned_, *pinned_light, delivery["load"]]
    )
    busy_note = (
        f"**The machine was busy**: other processes used up to {foreign:.2f} cores during a "
        "measured run; treat the numbers as noisier than usual."
        if foreign > 0.15
        else f"The machine was otherwise quiet (other processes used at most {foreign:.2f} "
        "cores during any measured run)."
    )
    cost, light_cost = costs(heavy), costs(light)
    cpu_on, cpu_off = (
        sum(v for k, v in summarise(heavy, mode)["cpu_ms"].items() if k != "wrk")
        for mode in ("on", "off")
    )
    svc_on, svc_off = (
        sum(summarise(heavy, mode)["cpu_ms"].get(k, 0) for k in SERVICES) for mode in ("on", "off")
    )
    section = [
        f"_Written by `benchmarks/overhead.py` on {started:%Y-%m-%d %H:%M} UTC at commit "
        f"`{commit()}`; `make bench` rewrites everything between the markers._",
        "",
        f"**Machine:** {info['nproc']} cores (`nproc`), {info['cpu_model']}, "
        f"{info['memory_gib']} GiB, Linux {info['kernel']}, Python {info['python']}, "
        f"{info['wrk']}. Load average {load_before} before, {load_after} after. {busy_note}",
        "",
        f"**Headline:** tracing on costs {100 * cost['rps']:.1f}% of throughput and "
        f"{100 * cost['p50']:+.1f}% p50 at saturation ({args.connections} connections; median of "
        f"{args.rounds} back-to-back round pairs), {100 * light_cost['p50']:+.1f}% p50 for a "
        f"single client. In CPU per order, which other load disturbs less: "
        f"{pct(cpu_on, cpu_off)} for the whole stack, of which the four services "
        f"{pct(svc_on, svc_off)}. "
        f"Span delivery: {delivery['delta']['jaeger_stored']:.0f} of "
        f"{delivery['delta']['services_ended']:.0f} spans stored. Time to queryable: "
        + (
            f"p50 {quantile(delivery['probes'].seconds, 0.5):.2f} s, "
            f"p95 {quantile(delivery['probes'].seconds, 0.95):.2f} s."
            if delivery["probes"].seconds
            else "n/a."
        ),
        "",
        *goal_lines(floor, heavy, light, delivery, path),
        *pinned_goal_lines(heavy, pinned_, light, pinned_light),
        *pinned_freshness_row(pinned_fresh, delivery["probes"]),
        "",
        "### What tracing costs beyond the SDK: the floor",
        "",
        *floor_lines(floor, heavy, light),
        *path_lines(path, heavy),
        "",
        "### Levers, each against the current settings in the same run",
        "",
        "Each row is a traced stack of its own, up for the whole run and measured in the same "
        "rounds as the others (rows: the setting changed on top of the current ones). Added CPU "
        "is against the untraced stack of the same round; the comparisons are medians of the "
        "per-round pairs.",
        "",
        *levers_table(heavy, light, levers),
        "",
        f"### Throughput and latency at saturation ({args.connections} connections)",
        "",
        f"`POST /api/orders` (one SKU123 item) through the gateway, wrk with 1 thread and "
        f"{args.connections} connections, {args.rounds} rounds of {args.duration:g} s per stack, "
        "alternating.",
        "",
        *comparison_table(heavy),
        "",
        *rounds_table(heavy),
        "",
        *pinned_lines(pinned_, cores, args.connections, args.duration),
        *pinned_lines(pinned_light, cores, 1, light_seconds),
        "### Latency for a single client (1 connection)",
        "",
        *comparison_table(light),
        "",
        "### CPU per order (ms)",
        "",
        "At saturation. On 2 cores every process below shares the same CPUs, so the backends' "
        "CPU is paid out of the services' throughput here; on a real deployment the collector "
        "and Jaeger run elsewhere.",
        "",
        *cpu_table(heavy),
        "",
        "At one connection (the single-client rounds) every request wakes each event loop on its "
        "own in both stacks, so this is the per-request cost without the batching a busier "
        "loop gets:",
        "",
        *cpu_table(light),
        *profile_table,
        "",
        f"### Span delivery at sustained load ({args.sustain:g} s at {SUSTAIN_SHARE:.0%} of "
        "saturation, tracing on)",
        "",
        *delivery_lines(delivery),
        "",
        "### Time to queryable",
        "",
        *queryable_lines(delivery["probes"]),
        "",
        "Per traced stack, at the same paced load (the current settings from the sustained run "
        f"above, each export-timing lever for {args.freshness:g} s):",
        "",
        *freshness_table(fresh),
    ]
    if not args.no_doc:
        write_doc(section)
        say(f"wrote {DOC.relative_to(ROOT)}")
    print("\n".join(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
