"""What PostgreSQL costs per order beside SQLite, and what 1, 2 and 3 replicas of each service
give on this machine: one run, side by side.

    make bench-replicas                                 # the defaults below, ~6 min on 2 cores
    python benchmarks/replicas.py --rounds 3 --duration 12 --connections 16

Four real stacks (stackctl, tracing on, no faults) run side by side on free loopback ports:
``sqlite`` (one process per service, SQLite files), ``pg-1``, ``pg-2`` and ``pg-3`` (one
local PostgreSQL, 1, 2 or 3 processes of each service behind HAProxy). wrk
(``benchmarks/order.lua``) drives ``POST /api/orders`` through each stack's gateway port,
round by round in a shifting order (benchmarks/overhead.py ``alternate``), after every stack's
spans are stored (so no export backlog burns CPU in another's round).

CPU is counted per process tree (PostgreSQL serves each connection in a child process), for
every process of the stack: services, HAProxy, PostgreSQL, the collector and Jaeger. Results:
the storage cost goes to ``docs/benchmarks.md``, the replica throughput to
``docs/scale-out.md``, each between its own markers (the text around them is kept).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import overhead  # noqa: E402

from stackctl.ports import Ports  # noqa: E402
from stackctl.stack import Stack  # noqa: E402

SCALE_DOC = ROOT / "docs" / "scale-out.md"
STORAGE_DOC = ROOT / "docs" / "benchmarks.md"
REPLICA_MARKERS = ("<!-- replicas:begin -->", "<!-- replicas:end -->")
STORAGE_MARKERS = ("<!-- storage:begin -->", "<!-- storage:end -->")
# mode: (database, replicas)
MODES = {"sqlite": ("sqlite", 1), "pg-1": ("postgres", 1), "pg-2": ("postgres", 2)}
MODES["pg-3"] = ("postgres", 3)
SERVICE_PREFIXES = ("api-gateway", "inventory-service", "order-service", "notification-service")


def tree_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process and its live descendants, plus what its reaped
    children spent (PostgreSQL serves each connection in a child of the postmaster)."""
    if pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        fields = stats.get(current)
        if fields is None:
            continue
        total += sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime
        todo += children.get(current, [])
    return total


@dataclass
class Bench(overhead.Bench):
    """A stack whose CPU is counted per process tree."""

    def cpu(self) -> dict[str, float]:
        return {p.name: tree_seconds(p.pid()) for p in self.stack.processes}


def start(mode: str, base: Path) -> Bench:
    database, replicas = MODES[mode]
    stack = Stack(
        run_dir=base / mode / "run",
        data_dir=base / mode / "data",
        ports=Ports.free(),
        env=dict(overhead.NO_FAULTS),
        with_prometheus=False,
        with_browser=False,
        database=database,
        replicas=replicas,
    )
    t0 = time.monotonic()
    stack.up(timeout=120, report=lambda line: None)
    overhead.say(f"stack '{mode}' up in {time.monotonic() - t0:.1f} s, {stack.gateway_url}")
    return Bench(mode, stack)


def part(cpu: dict[str, float], prefixes: tuple[str, ...]) -> float:
    return sum(v for name, v in cpu.items() if name.startswith(prefixes))


@dataclass
class Figures:
    mode: str
    rps: float  # median over rounds
    p50_ms: float
    p95_ms: float
    cpu_ms: float  # all the stack's processes, per order
    services_ms: float
    database_ms: float  # PostgreSQL's process tree (0 for SQLite: it runs inside the services)
    balancer_ms: float
    errors: int


def figures(rounds: list[overhead.Round], mode: str) -> Figures:
    mine = [r for r in rounds if r.mode == mode]
    orders = sum(r.wrk["requests"] for r in mine) or 1

    def per_order(prefixes: tuple[str, ...] | None) -> float:
        spent = sum(
            sum(v for k, v in r.cpu.items() if k != "wrk")
            if prefixes is None
            else part(r.cpu, prefixes)
            for r in mine
        )
        return 1000 * spent / orders

    return Figures(
        mode,
        statistics.median(r.rps for r in mine),
        statistics.median(r.wrk["p50_ms"] for r in mine),
        statistics.median(r.wrk["p95_ms"] for r in mine),
        per_order(None),
        per_order(SERVICE_PREFIXES),
        per_order(("postgres",)),
        per_order(("haproxy",)),
        sum(r.wrk["non_2xx"] + r.wrk["socket_errors"] for r in mine),
    )


def storage_lines(sqlite: Figures, pg: Figures, head: list[str]) -> list[str]:
    extra = pg.cpu_ms - sqlite.cpu_ms
    return [
        *head,
        "",
        "| store (1 process per service) | orders/s | p50 ms | p95 ms | CPU ms per order "
        "(all processes) | of which services | of which PostgreSQL | non-2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {f.mode} | {f.rps:.1f} | {f.p50_ms:.1f} | {f.p95_ms:.1f} | {f.cpu_ms:.2f} "
            f"| {f.services_ms:.2f} | {f.database_ms:.2f} | {f.errors} |"
            for f in (sqlite, pg)
        ),
        "",
        f"PostgreSQL costs {extra:+.2f} ms of CPU per order ({100 * extra / sqlite.cpu_ms:+.0f} %) "
        f"beside SQLite, and changes throughput by {100 * (pg.rps / sqlite.rps - 1):+.0f} % at "
        "the same load.",
    ]


def replica_lines(rows: list[Figures], head: list[str]) -> list[str]:
    one = rows[0].rps
    return [
        *head,
        "",
        "| replicas of each service | orders/s | ratio to 1 | p50 ms | p95 ms | CPU ms per order "
        "| of which HAProxy | of which PostgreSQL | non-2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {f.mode.removeprefix('pg-')} | {f.rps:.1f} | {f.rps / one:.2f} | {f.p50_ms:.1f} "
            f"| {f.p95_ms:.1f} | {f.cpu_ms:.2f} | {f.balancer_ms:.2f} | {f.database_ms:.2f} "
            f"| {f.errors} |"
            for f in rows
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per stack")
    parser.add_argument("--duration", type=float, default=12, help="seconds per round")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--no-doc", action="store_true", help="print, do not write the docs")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: scripts/install_backends.sh --bench-tools", file=sys.stderr)
        return 2
    info = overhead.machine()
    load_before = overhead.loadavg()
    overhead.say(
        f"{info['nproc']} cores, load average {load_before}; {args.rounds} rounds x "
        f"{args.duration:g} s per stack at c={args.connections}; stacks {', '.join(MODES)}"
    )
    started = datetime.now(UTC)
    base = Path(tempfile.mkdtemp(prefix="otel-bench-replicas-"))
    base.chmod(0o711)  # PostgreSQL runs as its own user and must enter its directories
    benches: dict[str, Bench] = {}
    try:
        for mode in MODES:
            benches[mode] = start(mode, base)
        overhead.say("warm-up: 5 s per stack")
        for bench in benches.values():
            overhead.wrk(bench.stack.gateway_url, args.connections, 5)
        rounds = overhead.alternate(benches, args.rounds, args.connections, args.duration)
    finally:
        for bench in benches.values():
            bench.stack.down(report=lambda line: None)
        shutil.rmtree(base, ignore_errors=True)
    by_mode = {mode: figures(rounds, mode) for mode in MODES}
    head = [
        f"One run of `make bench-replicas` on {started:%Y-%m-%d %H:%M} UTC, commit "
        f"{overhead.commit()}: {info['nproc']} cores ({info['cpu_model']}), {info['memory_gib']} "
        f"GiB, load average before {load_before}; {args.rounds} rounds x {args.duration:g} s "
        f"per stack, wrk c={args.connections}, the four stacks side by side in a shifting order; "
        "medians of the rounds, CPU summed over each stack's process trees.",
    ]
    storage = storage_lines(by_mode["sqlite"], by_mode["pg-1"], head)
    replicas = replica_lines([by_mode[m] for m in ("pg-1", "pg-2", "pg-3")], head)
    print("\n".join([*storage, "", *replicas]))
    if not args.no_doc:
        overhead.write_doc(storage, STORAGE_DOC, *STORAGE_MARKERS)
        overhead.write_doc(replicas, SCALE_DOC, *REPLICA_MARKERS)
        overhead.say(f"wrote {STORAGE_DOC.relative_to(ROOT)} and {SCALE_DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
