"""Where the traced services spend their CPU on tracing: py-spy samples, sorted by cause.

Used by ``benchmarks/overhead.py --profile``: each service is sampled under load with
``py-spy record --gil`` (100 Hz, the thread holding the GIL only: Python's CPU, without threads
idling in a wait that py-spy would otherwise count as busy), on the traced and the untraced
stack, and every sample is put in one category:

- the span export thread (``BatchProcessor.worker``): OTLP encoding, the gRPC call, the rest;
- otherwise, walking up from the innermost frame, the first frame that is not the standard
  library decides: an instrumentation (server spans, client spans, db spans, their shared
  semantic-convention and propagation helpers), the OpenTelemetry API (context, propagation),
  the SDK (spans, attributes, processors, sampler), this project's own hooks (``servicekit``:
  span names and ``server.address``, redaction, the sampler, the span counter) and its own
  db spans (``servicekit/storage/base.py``), or none of them (the application's own work).

A sample stands for 10 ms of the GIL held, so samples / orders gives milliseconds per order;
the difference between the two stacks shows what tracing adds outside OpenTelemetry's own code
too (the application and frameworks doing more work, or the same work more slowly).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

EXPORT = "export thread: "
RATE = 100  # samples per second
REST = "application, frameworks, the rest"
# (substring of the innermost deciding frame, ``function (file:line)``, category); the first
# match wins.
CATEGORIES = (
    ("statement_span (", "instrumentation: db spans (servicekit/storage)"),
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


def counts(path: Path) -> Counter[str]:
    """Samples of one service per category (``REST`` for everything else)."""
    found: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        found[category(stack) or REST] += int(count)
    return found


def py_spy() -> str | None:
    """py-spy from the PATH or beside this interpreter (the project's virtualenv)."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def record(pids: dict[str, int], seconds: float) -> Counter[str]:
    """Sample each service for ``seconds`` (the caller keeps the load on); samples per category,
    all services together. Empty when py-spy is missing or may not attach (ptrace)."""
    spy = py_spy()
    if spy is None:
        return {}
    out = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    argv = [
        spy,
        "record",
        "--gil",
        "--nonblocking",
        "--full-filenames",
        "-r",
        str(RATE),
        "-f",
        "raw",
    ]
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
    result: Counter[str] = Counter()
    for name in pids:
        if (out / f"{name}.txt").exists():
            result.update(counts(out / f"{name}.txt"))
    shutil.rmtree(out, ignore_errors=True)
    return result


def table(traced: Counter[str], untraced: Counter[str], orders: tuple[float, float]) -> list[str]:
    """Markdown: GIL milliseconds per order by category, traced and untraced stacks
    (``orders``: the orders each stack served while it was sampled)."""

    def ms(found: Counter[str], n: float, name: str) -> float:
        return 1000 / RATE * found.get(name, 0) / n if n else 0.0

    names = sorted(set(traced) | set(untraced), key=lambda k: (k == REST, k.startswith("our"), k))
    lines = [
        "| where (the four services) | tracing on | `OTEL_SDK_DISABLED=true` | added |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in names:
        a, b = ms(traced, orders[0], name), ms(untraced, orders[1], name)
        lines.append(f"| {name} | {a:.2f} | {b:.2f} | {a - b:+.2f} |")
    a = sum(ms(traced, orders[0], name) for name in names)
    b = sum(ms(untraced, orders[1], name) for name in names)
    lines.append(f"| **all** | **{a:.2f}** | **{b:.2f}** | **{a - b:+.2f}** |")
    return lines
