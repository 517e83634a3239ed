"""Where the traced services spend their CPU on tracing: py-spy samples, sorted by cause.

Used by ``benchmarks/overhead.py --profile``: each service is sampled (``py-spy record``, 100 Hz,
busy threads only) under load, and every sample is put in one category:

- the span export thread (``BatchProcessor.worker``): OTLP encoding, the gRPC call, the rest;
- otherwise, walking up from the innermost frame, the first frame that is not the standard
  library decides: an instrumentation (server spans, client spans, db spans, their shared
  semantic-convention and propagation helpers), the OpenTelemetry API (context, propagation),
  the SDK (spans, attributes, processors, sampler), this project's own hooks (``servicekit``:
  span names and ``server.address``, redaction, the sampler, the span counter) and its own
  db spans (``servicekit/db.py``), or none of them (the application's own work).

A category's share of a service's samples, times that service's CPU per order, gives
milliseconds per order.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

SERVICES = ("api-gateway", "inventory-service", "order-service", "notification-service")
EXPORT = "export thread: "
# (substring of the innermost deciding frame, ``function (file:line)``, category); the first
# match wins.
CATEGORIES = (
    ("statement_span (", "instrumentation: db spans (servicekit/db.py)"),
    ("instrumentation/asgi/", "instrumentation: server spans (ASGI, FastAPI)"),
    ("instrumentation/fastapi/", "instrumentation: server spans (ASGI, FastAPI)"),
    ("instrumentation/httpx/", "instrumentation: client spans (httpx)"),
    ("opentelemetry/instrumentation/", "instrumentation: semconv, propagators, helpers"),
    ("opentelemetry/util/", "instrumentation: semconv, propagators, helpers"),
    ("wrapt/", "instrumentation: semconv, propagators, helpers"),
    ("opentelemetry/sdk/", "SDK: spans, attributes, processors, sampler"),
    ("opentelemetry/attributes/", "SDK: spans, attributes, processors, sampler"),
    ("opentelemetry/", "API: context, propagation, current span"),
    ("servicekit/semconv.py", "our hooks (span names, server.address, redaction, sampler)"),
    ("servicekit/redaction.py", "our hooks (span names, server.address, redaction, sampler)"),
    ("servicekit/sampling.py", "our hooks (span names, server.address, redaction, sampler)"),
    ("SpanCounter.", "our hooks (span names, server.address, redaction, sampler)"),
)


def frame_file(frame: str) -> str:
    """The file of one py-spy frame, ``function (file:line)``."""
    return frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]


def is_library(path: str) -> bool:
    """The standard library: its time counts for whoever called it."""
    return path.startswith("<frozen") or ("/lib/python3" in path and "/site-packages/" not in path)


def category(stack: str) -> str | None:
    """The category of one sample (frames outermost first, ``;``-separated), or None."""
    frames = stack.split(";")
    if any("BatchProcessor.worker" in frame for frame in frames):
        if "trace_encoder" in stack or "encode_spans" in stack:
            return EXPORT + "OTLP encoding"
        if "/grpc/" in stack:
            return EXPORT + "gRPC call"
        return EXPORT + "batching, retries, the rest"
    for frame in reversed(frames):
        path = frame_file(frame)
        if is_library(path):
            continue
        return next((name for needle, name in CATEGORIES if needle in frame), None)
    return None


def shares(path: Path) -> dict[str, float]:
    """Share of one service's samples per category."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        if (name := category(stack)) is not None:
            counts[name] += int(count)
    return {name: n / total for name, n in counts.items()} if total else {}


def py_spy() -> str | None:
    """py-spy from the PATH or beside this interpreter (the project's virtualenv)."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def record(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """Sample each service for ``seconds`` (the caller keeps the load on); shares per service.
    Empty when py-spy is missing or may not attach (ptrace)."""
    spy = py_spy()
    if spy is None:
        return {}
    out = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    argv = [spy, "record", "--nonblocking", "--full-filenames", "-r", "100", "-f", "raw"]
    spies = [
        subprocess.Popen(
            [*argv, "-d", f"{seconds:g}", "-o", str(out / f"{name}.txt"), "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    for proc in spies:
        proc.wait()
    result = {name: shares(out / f"{name}.txt") for name in pids if (out / f"{name}.txt").exists()}
    shutil.rmtree(out, ignore_errors=True)
    return result


def table(result: dict[str, dict[str, float]], cpu_ms: dict[str, float]) -> list[str]:
    """Markdown: ms per order per category and service (share x the service's CPU per order)."""
    names = sorted({k for v in result.values() for k in v}, key=lambda k: (k.startswith("our"), k))
    lines = [
        "| where | " + " | ".join(SERVICES) + " | all four |",
        "| --- |" + " ---: |" * (len(SERVICES) + 1),
    ]
    for name in names:
        cells = [result.get(s, {}).get(name, 0) * cpu_ms.get(s, 0) for s in SERVICES]
        lines.append(
            f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + f" | {sum(cells):.2f} |"
        )
    cells = [sum(result.get(s, {}).values()) * cpu_ms.get(s, 0) for s in SERVICES]
    lines.append(
        "| **all OpenTelemetry code and hooks** | "
        + " | ".join(f"**{c:.2f}**" for c in cells)
        + f" | **{sum(cells):.2f}** |"
    )
    return lines
