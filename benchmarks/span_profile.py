"""Where the traced services spend their CPU on tracing: py-spy samples, sorted by cause.

Used by ``benchmarks/overhead.py --profile``: each service is sampled under load with
``py-spy record --gil`` (100 Hz, the thread holding the GIL only: Python's CPU, without threads
idling in a wait that py-spy would otherwise count as busy), on the traced and the untraced
stack, in two passes: Python frames only (``--nonblocking``: the GIL ms per order), then with
the C frames of the interpreter, libc and extensions (``--native``, which pauses the process at
each sample and so inflates every row: only its shares are used, :func:`refine`). Every sample
is put in one category:

- the span export thread (``BatchProcessor.worker``): OTLP encoding, the gRPC call, the rest;
- otherwise a native frame names the interpreter's own work wherever it happens: garbage
  collection (``gc_collect_main`` and its callers), GIL hand-offs (``take_gil``, ``drop_gil``),
  and, when the innermost frame is in libc, a system call (``getpid``, which asyncio's C
  ``get_running_loop`` makes on every call in Python 3.11) or another libc function;
- otherwise, walking up from the innermost frame, the first Python frame that is not the
  standard library decides: an instrumentation (server spans, client spans, db spans, their
  shared semantic-convention and propagation helpers), the OpenTelemetry API (context,
  propagation), the SDK (spans, attributes, processors, sampler), this project's own hooks
  (``servicekit``: span names and ``server.address``, redaction, the sampler, the span counter)
  and its own db spans (``servicekit/storage/base.py``);
- otherwise (not tracing's own code), the innermost frame, standard library included, that
  belongs to a known group: the HTTP client (httpx, httpcore, anyio, h11, aiohttp), the server
  and framework (uvicorn, starlette, fastapi), validation and JSON (pydantic, json, msgspec),
  logging, the event loop (asyncio, uvloop), sqlite, the application's own code (``servicekit``
  and the services' packages); whatever is left is "the rest".

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
REST = "the rest"
# Not tracing's own code: these rows (in this order) explain what the untraced stack does too.
# (substring of a frame, ``function (file:line)``, category); the innermost matching frame wins.
REST_GROUPS = (
    ("/httpx/", "HTTP client (httpx, httpcore, anyio, h11, aiohttp)"),
    ("/httpcore/", "HTTP client (httpx, httpcore, anyio, h11, aiohttp)"),
    ("/anyio/", "HTTP client (httpx, httpcore, anyio, h11, aiohttp)"),
    ("/sniffio/", "HTTP client (httpx, httpcore, anyio, h11, aiohttp)"),
    ("/h11/", "HTTP client (httpx, httpcore, anyio, h11, aiohttp)"),
    ("/aiohttp/", "HTTP client (httpx, httpcore, anyio, h11, aiohttp)"),
    ("/uvicorn/", "server and framework (uvicorn, starlette, fastapi)"),
    ("/httptools/", "server and framework (uvicorn, starlette, fastapi)"),
    ("/starlette/", "server and framework (uvicorn, starlette, fastapi)"),
    ("/fastapi/", "server and framework (uvicorn, starlette, fastapi)"),
    ("/pydantic", "validation and JSON (pydantic, json, msgspec)"),
    ("/json/", "validation and JSON (pydantic, json, msgspec)"),
    ("/_json.c", "validation and JSON (pydantic, json, msgspec)"),
    ("/msgspec/", "validation and JSON (pydantic, json, msgspec)"),
    ("/logging/", "logging"),
    ("/sqlite3/", "sqlite"),
    ("/aiosqlite/", "sqlite"),
    ("_sqlite", "sqlite"),
    ("libsqlite3", "sqlite"),
    ("/asyncio/", "event loop (asyncio, uvloop)"),
    ("_asynciomodule.c", "event loop (asyncio, uvloop)"),
    ("/uvloop/", "event loop (asyncio, uvloop)"),
    ("/selectors.py", "event loop (asyncio, uvloop)"),
    ("/servicekit/", "application code (servicekit, the services)"),
    ("/api_gateway/", "application code (servicekit, the services)"),
    ("/order_service/", "application code (servicekit, the services)"),
    ("/inventory_service/", "application code (servicekit, the services)"),
    ("/notification_service/", "application code (servicekit, the services)"),
)
GC = "garbage collection (native gc frames)"
GIL = "GIL hand-offs (take_gil, drop_gil)"
GETPID = "syscalls: getpid (asyncio's get_running_loop)"
LIBC = "syscalls and libc, other (socket writes, semaphores, malloc)"
# Native functions (exact name, or a prefix ending in ``*``) that name the interpreter's work.
GC_FUNCTIONS = ("gc_collect*", "collect_with_callback", "collect_generations", "_PyGC_Collect*")
GIL_FUNCTIONS = ("take_gil", "drop_gil")
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


def frame_function(frame: str) -> str:
    """The function of one py-spy frame, ``function (file:line)``."""
    return frame.rpartition(" (")[0]


def is_native(frame: str) -> bool:
    """A C frame (``--native``): the interpreter, libc, an extension module; its file is a
    shared object or a C source, never a ``.py`` file."""
    path = frame_file(frame)
    return not path.endswith((".py", ".pyx")) and not path.startswith("<")


def is_library(path: str) -> bool:
    """The standard library: its time counts for whoever called it."""
    return path.startswith("<frozen") or ("/lib/python3" in path and "/site-packages/" not in path)


def named(function: str, names: tuple[str, ...]) -> bool:
    return any(
        function.startswith(name[:-1]) if name.endswith("*") else function == name for name in names
    )


def native_category(frames: list[str]) -> str | None:
    """Garbage collection or a GIL hand-off anywhere in the stack, or a libc function as its
    innermost frame (a system call, mostly); None when the native frames name none."""
    functions = [frame_function(frame) for frame in frames if is_native(frame)]
    if any(named(function, GC_FUNCTIONS) for function in functions):
        return GC
    if any(named(function, GIL_FUNCTIONS) for function in functions):
        return GIL
    innermost = frames[-1] if frames else ""
    if is_native(innermost) and "/libc" in frame_file(innermost):
        return GETPID if frame_function(innermost) in ("getpid", "__getpid") else LIBC
    return None


def category(stack: str) -> str | None:
    """The category of one sample (frames outermost first, ``;``-separated) when it is
    tracing's own code or an interpreter cost the native frames name, or None."""
    frames = stack.split(";")
    if any("BatchProcessor.worker" in frame for frame in frames):
        if "trace_encoder" in stack or "encode_spans" in stack:
            return EXPORT + "OTLP encoding"
        if "/grpc/" in stack:
            return EXPORT + "gRPC call"
        return EXPORT + "batching, retries, the rest"
    if found := native_category(frames):
        return found
    for frame in reversed(frames):
        path = frame_file(frame)
        if is_native(frame) or is_library(path):
            continue
        return next((name for needle, name in CATEGORIES if needle in frame), None)
    return None


def rest_category(stack: str) -> str:
    """Where a sample that is not tracing's own code goes: the innermost frame of a known
    group (``REST_GROUPS``; standard library and extension modules included), else ``REST``."""
    for frame in reversed(stack.split(";")):
        if found := next((name for needle, name in REST_GROUPS if needle in frame), None):
            return found
    return REST


def classify(stack: str) -> str:
    """The one row of the profile table a sample counts in."""
    return category(stack) or rest_category(stack)


def counts(path: Path) -> Counter[str]:
    """Samples of one service per category (``REST`` for everything else)."""
    found: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        found[classify(stack)] += int(count)
    return found


def without_native(stack: str) -> str:
    """The stack as a Python-only sample shows it: the C frames left out."""
    return ";".join(frame for frame in stack.split(";") if not is_native(frame))


def moves(path: Path) -> Counter[tuple[str, str]]:
    """Samples of one service with native frames, per (row without the C frames, row with
    them): how the native frames move samples between rows."""
    found: Counter[tuple[str, str]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        found[(classify(without_native(stack)), classify(stack))] += int(count)
    return found


def refine(python: Counter[str], native: Counter[tuple[str, str]]) -> Counter[str]:
    """The Python-only samples (``python``: the ms per order) with each row split as the
    native pass splits it: of the native samples that a Python-only profile puts in row r, the
    share that the C frames put in row k moves from r to k. Shares, not counts, because the
    native pass (pausing the process at each sample) inflates everyone's time."""
    result: Counter[str] = Counter({row: float(n) for row, n in python.items()})
    in_row: Counter[str] = Counter()
    for (row, _), n in native.items():
        in_row[row] += n
    for (row, to), n in native.items():
        if to != row and row in python:
            moved = python[row] * n / in_row[row]
            result[row] -= moved
            result[to] += moved
    return result


def py_spy() -> str | None:
    """py-spy from the PATH or beside this interpreter (the project's virtualenv)."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def spy(pids: dict[str, int], seconds: float, native: bool, out: Path) -> dict[str, Path]:
    """Run py-spy on each process for ``seconds`` at once; their raw profiles in ``out``,
    ``<service>.txt`` each (py-spy's raw format: ``frame;frame;... count`` a line, outermost
    frame first), for those it could sample."""
    spy_ = py_spy()
    if spy_ is None:
        return {}
    out.mkdir(parents=True, exist_ok=True)
    argv = [spy_, "record", "--gil", "--full-filenames", "-r", str(RATE), "-f", "raw"]
    # Native stacks can only be read from a stopped process: --native never with --nonblocking.
    argv += ["--native"] if native else ["--nonblocking"]
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
    return {name: out / f"{name}.txt" for name in pids if (out / f"{name}.txt").exists()}


def record(
    pids: dict[str, int], seconds: float, native: bool = False, keep: Path | None = None
) -> Counter[str]:
    """Sample each service for ``seconds`` (the caller keeps the load on); samples per category,
    all services together. Empty when py-spy is missing or may not attach (ptrace).

    ``native``: with the C frames (py-spy pauses the process for each sample); without, Python
    frames only and the process never paused. ``keep``: a directory to leave the raw profiles
    in (see :func:`spy`)."""
    out = keep or Path(tempfile.mkdtemp(prefix="bench-profile-"))
    result: Counter[str] = Counter()
    for path in spy(pids, seconds, native, out).values():
        result.update(counts(path))
    if keep is None:
        shutil.rmtree(out, ignore_errors=True)
    return result


def record_moves(
    pids: dict[str, int], seconds: float, keep: Path | None = None
) -> Counter[tuple[str, str]]:
    """A native pass (:func:`record` with ``native``) as :func:`moves`, all services
    together: what :func:`refine` splits a Python-only profile's rows with."""
    out = keep or Path(tempfile.mkdtemp(prefix="bench-profile-"))
    result: Counter[tuple[str, str]] = Counter()
    for path in spy(pids, seconds, True, out).values():
        result.update(moves(path))
    if keep is None:
        shutil.rmtree(out, ignore_errors=True)
    return result


def row_order(name: str) -> tuple[int, int, str]:
    """Tracing's own code first, then the export thread, then what the untraced stack does too
    (``REST_GROUPS`` and the native rows in a fixed order), ``REST`` last."""
    tracing = list(dict.fromkeys(name for _, name in CATEGORIES))
    rest = list(dict.fromkeys([GC, GIL, GETPID, LIBC, *(name for _, name in REST_GROUPS)]))
    if name in tracing:
        return (0, tracing.index(name), name)
    if name.startswith(EXPORT):
        return (1, 0, name)
    if name in rest:
        return (2, rest.index(name), name)
    return (3 if name == REST else 0, len(tracing), name)


def table(traced: Counter[str], untraced: Counter[str], orders: tuple[float, float]) -> list[str]:
    """Markdown: GIL milliseconds per order by category, traced and untraced stacks
    (``orders``: the orders each stack served while it was sampled)."""

    def ms(found: Counter[str], n: float, name: str) -> float:
        return 1000 / RATE * found.get(name, 0) / n if n else 0.0

    names = sorted(set(traced) | set(untraced), key=row_order)
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
