"""Benchmark analyze_traces.py against the reference approach (jq) on one large export.

In one run, on the same traces written twice, as a Jaeger JSON export and as OTLP JSON Lines
(the collector's ``file`` exporter): our analyzer (full analysis: latency from the root span,
errors, critical path, culprit, summary percentiles) and the reference demo's approach, jq
computing only which traces have a span longer than N ms, on each file. All run as separate
processes, best of ``--repeat`` runs; wall time, CPU time and peak RSS come from ``wait4``'s
rusage for that process alone.

    python benchmarks/analyzer_bench.py                 # print the results
    python benchmarks/analyzer_bench.py --write-docs    # and put them in docs/analyzer.md

Before and after a change, on the same machine: ``--against DIR`` also runs the analyzer of
another checkout (``git archive REV analyze_traces.py trace_analysis | tar -x -C DIR``), with
the same interpreter, alternating with this one run by run, so that a busy machine slows both
alike; the table gains its rows and the CPU-time ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DOC = REPO / "docs" / "analyzer.md"
START, END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    max_rss_mib: float  # everything resident, the mapped export's clean pages included
    max_anon_mib: float  # the process's own memory (heap), sampled every 5 ms
    stdout: bytes


def _sample_anon(pid: int, peak: list[int], done: threading.Event) -> None:
    """Track the peak ``RssAnon`` of ``pid``: memory that is the process's, not file cache."""
    status = Path(f"/proc/{pid}/status")
    while not done.is_set():
        try:
            for line in status.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak[0] = max(peak[0], int(line.split()[1]))
        except OSError:
            return
        done.wait(0.005)


def measure(command: list[str]) -> Run:
    """Run ``command``; its own wall time, CPU time and peak memory (not the children's)."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE)
        peak, done = [0], threading.Event()
        sampler = threading.Thread(target=_sample_anon, args=(process.pid, peak, done))
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr = process.stderr.read().decode() if process.stderr else ""
        if process.returncode not in (0, 1):
            raise SystemExit(f"{command[0]} failed ({process.returncode}): {stderr}")
        out.seek(0)
        cpu = usage.ru_utime + usage.ru_stime
        return Run(wall, cpu, usage.ru_maxrss / 1024, peak[0] / 1024, out.read())


def best_of(command: list[str], repeat: int) -> tuple[Run, float]:
    return best_of_each([command], repeat)[0]


def best_of_each(commands: list[list[str]], repeat: int) -> list[tuple[Run, float]]:
    """Each command's best run (by wall time) and median wall time over ``repeat`` rounds,
    the commands alternating within each round (the order reversed every other round)."""
    runs: list[list[Run]] = [[] for _ in commands]
    for round_ in range(repeat):
        order = list(range(len(commands)))
        for index in order if round_ % 2 == 0 else order[::-1]:
            runs[index].append(measure(commands[index]))
    return [
        (min(each, key=lambda r: r.wall_s), statistics.median(r.wall_s for r in each))
        for each in runs
    ]


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    jq = subprocess.run(["jq", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({model or platform.machine()}), Python "
        f"{platform.python_version()}, {jq}, {platform.system()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--spans", type=int, default=120_000)
    parser.add_argument("--seed", type=int, default=20251124)
    parser.add_argument("--threshold-ms", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--export", type=Path, default=REPO / "bench" / "analyzer-export.json")
    parser.add_argument(
        "--otlp-export", type=Path, default=REPO / "bench" / "analyzer-export.otlp.jsonl"
    )
    parser.add_argument(
        "--against", type=Path, help="another checkout whose analyzer is measured alongside"
    )
    parser.add_argument("--against-label", default="before", help="its name in the table")
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOC.name}")
    args = parser.parse_args(argv)
    if shutil.which("jq") is None:
        raise SystemExit("jq is not installed (apt-get install -y jq)")

    subprocess.run(
        [sys.executable, REPO / "benchmarks" / "generate_export.py", "--spans", str(args.spans),
         "--seed", str(args.seed), "--output", str(args.export),
         "--otlp-output", str(args.otlp_export)],
        check=True,
    )  # fmt: skip
    n = args.threshold_ms
    jaeger_jq = f"[.data[] | select(([.spans[].duration] | max) > {n} * 1000) | .traceID]"
    otlp_jq = (
        "[inputs | .resourceSpans[].scopeSpans[].spans[] | select(((.endTimeUnixNano | "
        f"tonumber) - (.startTimeUnixNano | tonumber)) > {n} * 1000000) | .traceId] | unique"
    )
    formats = [
        ("Jaeger JSON", args.export, ["jq", "-c", jaeger_jq]),
        ("OTLP JSON Lines", args.otlp_export, ["jq", "-n", "-c", otlp_jq]),
    ]
    # each tool's fixed cost (interpreter and library start-up) on an export of no traces
    empty = REPO / "tests" / "fixtures" / "traces" / "empty.json"
    ours_base = [sys.executable, str(REPO / "analyze_traces.py"), str(n), "--format", "json"]
    other_base = (
        [sys.executable, str(args.against / "analyze_traces.py"), *ours_base[2:]]
        if args.against
        else None
    )
    bases = [ours_base] + ([other_base] if other_base else [])
    idles = [
        run for run, _ in best_of_each([[*b, "--input", str(empty)] for b in bases], args.repeat)
    ]
    ours_idle = idles[0]
    theirs_idle = best_of(["jq", "-c", ".", str(empty)], args.repeat)[0]

    table = [
        f"| input | tool | wall (best of {args.repeat}) | median | CPU | spans/s | start-up "
        "| spans/s after start-up | spans per CPU second | peak RSS | of which its own memory |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    found = []
    sizes = []
    ratios: list[str] = []
    for label, path, jq_cmd in formats:
        measured = best_of_each([[*b, "--input", str(path)] for b in bases], args.repeat)
        (ours, ours_median), others = measured[0], measured[1:]
        theirs, theirs_median = best_of([*jq_cmd, str(path)], args.repeat)
        report = json.loads(ours.stdout)
        spans, traces = report["summary"]["spans"], report["summary"]["traces"]
        our_slow = {t["trace_id"] for t in report["traces"] if t["slow"]}
        jq_slow = set(json.loads(theirs.stdout))
        found.append((label, ours, theirs, our_slow, jq_slow, report))
        sizes.append(f"{label} {path.stat().st_size / 1e6:.0f} MB")
        rows = [
            ("analyze_traces.py: full analysis", ours, ours_median, ours_idle),
            ("jq: duration > N only", theirs, theirs_median, theirs_idle),
        ]
        for other, other_median in others:
            rows.insert(
                1, (f"analyze_traces.py {args.against_label}", other, other_median, idles[1])
            )
            ratios.append(
                f"{label}: CPU {ours.cpu_s:.2f} s against {other.cpu_s:.2f} s {args.against_label} "
                f"({ours.cpu_s / other.cpu_s - 1:+.0%}), wall (best) {ours.wall_s:.2f} s against "
                f"{other.wall_s:.2f} s ({ours.wall_s / other.wall_s - 1:+.0%}), own memory "
                f"{ours.max_anon_mib:,.0f} against {other.max_anon_mib:,.0f} MiB."
            )
        for name, run, median, idle in rows:
            table.append(
                f"| {label} | {name} | {run.wall_s:.2f} s | {median:.2f} s | {run.cpu_s:.2f} s "
                f"| {spans / run.wall_s:,.0f} | {idle.wall_s:.2f} s "
                f"| {spans / max(run.wall_s - idle.wall_s, 1e-6):,.0f} "
                f"| {spans / max(run.cpu_s, 1e-6):,.0f} "
                f"| {run.max_rss_mib:,.0f} MiB | {run.max_anon_mib:,.0f} MiB |"
            )
    lines = [
        f"Export: {traces:,} traces, {spans:,} spans, as {' and '.join(sizes)} "
        f"(`benchmarks/generate_export.py --spans {args.spans} --seed {args.seed}`), "
        f"threshold {n} ms. Machine: {machine()}.",
        "",
        *table,
        "",
    ]
    for label, ours, theirs, our_slow, jq_slow, report in found:
        lines.append(
            f"{label}: {theirs.wall_s / ours.wall_s:.1f}x faster than jq, peak RSS "
            f"{ours.max_rss_mib:,.0f} MiB against jq's {theirs.max_rss_mib:,.0f} MiB; traces over "
            f"{n} ms: analyzer {len(our_slow)} (by root span), jq {len(jq_slow)} (by longest "
            f"span), {len(our_slow & jq_slow)} in both; the analyzer also flagged "
            f"{report['summary']['errors']:,} failing traces that jq cannot see."
        )
    if ratios:
        lines += [
            "",
            f"This analyzer against {args.against_label}, run alternately:",
        ]
        lines += [f"- {ratio}" for ratio in ratios]
    same = found[0][5]["traces"] == found[1][5]["traces"]
    lines += [
        "",
        "The two analyzer reports list "
        + ("the same flagged traces with the same findings. " if same else "DIFFERENT traces. ")
        + "Wall and CPU times are of the whole process, start-up and writing the JSON report "
        "included; start-up is the same command on an export of no traces. Peak RSS counts "
        "the pages of the memory-mapped export the analyzer has touched (clean file cache "
        "the kernel can drop at will); its own memory is the peak anonymous RSS (`RssAnon`). "
        f"Load average while it ran: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        doc = DOC.read_text()
        if START not in doc or END not in doc:
            raise SystemExit(f"{DOC} has no {START} ... {END} section")
        new = re.sub(
            re.escape(START) + ".*?" + re.escape(END),
            lambda _: f"{START}\n{text}\n{END}",
            doc,
            flags=re.S,
        )
        DOC.write_text(new)
        print(f"wrote the results to {DOC.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
