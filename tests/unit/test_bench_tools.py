"""The benchmark's own measuring tools: the SDK floor replays an order faithfully, and the
profile puts each sample where its cost belongs (benchmarks/span_floor.py, span_profile.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench_modules import bench_module

ROOT = Path(__file__).resolve().parents[2]
ORDER_TRACE = ROOT / "tests" / "fixtures" / "traces" / "mixed.json"


@pytest.fixture(scope="module")
def floor() -> ModuleType:
    return bench_module("span_floor")


@pytest.fixture(scope="module")
def profile() -> ModuleType:
    return bench_module("span_profile")


def order_trace() -> dict:
    return json.loads(ORDER_TRACE.read_text())["data"][0]


def test_floor_replays_every_span_with_its_service_parent_and_attributes(floor) -> None:
    raw = order_trace()
    order, resources = floor.shapes(raw)
    seconds, spans = floor.replay(order, resources, orders=3)
    assert seconds > 0
    assert len(spans) == 3 * len(raw["spans"])
    one = spans[: len(raw["spans"])]
    names = {s.context.span_id: s.name for s in one}
    made = sorted(
        (
            s.resource.attributes["service.name"],
            s.name,
            s.kind.name.lower(),
            names.get(s.parent.span_id) if s.parent else None,
        )
        for s in one
    )
    by_id = {s["spanID"]: s for s in raw["spans"]}
    expected = []
    for s in raw["spans"]:
        tags = {t["key"]: t["value"] for t in s["tags"]}
        parent = next((r["spanID"] for r in s.get("references", [])), None)
        expected.append(
            (
                raw["processes"][s["processID"]]["serviceName"],
                s["operationName"],
                tags.get("span.kind", "internal"),
                by_id[parent]["operationName"] if parent else None,
            )
        )
    assert made == sorted(expected)
    # Every attribute comes back, and none of Jaeger's renderings of other span fields.
    replayed = sorted((s.name, sorted(s.attributes.items())) for s in one)
    stored = sorted(
        (
            s["operationName"],
            sorted(
                (t["key"], t["value"])
                for t in s["tags"]
                if not t["key"].startswith("otel.") and t["key"] not in ("span.kind", "error")
            ),
        )
        for s in raw["spans"]
    )
    assert replayed == stored


def test_floor_measures_create_and_encode_per_order(floor) -> None:
    result = floor.measure(order_trace(), orders=5, repeat=1)
    assert result["spans"] == len(order_trace()["spans"])
    assert result["create_ms"] > 0 and result["encode_ms"] > 0
    assert result["floor_ms"] == pytest.approx(result["create_ms"] + result["encode_ms"])


SITE = "/app/.venv/lib/python3.11/site-packages"
STDLIB = "/usr/lib/python3.11"


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        # The export thread, whatever it runs.
        (
            f"Thread.run ({STDLIB}/threading.py:982);BatchProcessor.worker ({SITE}/opentelemetry/"
            f"sdk/_shared_internal/__init__.py:162);encode_spans ({SITE}/opentelemetry/exporter/"
            "otlp/proto/common/_internal/trace_encoder/__init__.py:50)",
            "export thread: OTLP encoding",
        ),
        # The standard library counts for whoever called it.
        (
            f"app (/app/servicekit/app.py:1);__call__ ({SITE}/opentelemetry/instrumentation/asgi/"
            f"__init__.py:700);search ({STDLIB}/re/__init__.py:176)",
            "instrumentation: server spans (ASGI, FastAPI)",
        ),
        (
            f"start_span ({SITE}/opentelemetry/sdk/trace/__init__.py:1100)",
            "SDK: spans, attributes, processors, sampler",
        ),
        (
            f"inject ({SITE}/opentelemetry/propagate/__init__.py:120)",
            "API: context, propagation, current span",
        ),
        # Our own db spans count, the statement they wrap does not.
        (
            "execute (/app/servicekit/storage/base.py:77);"
            "statement_span (/app/servicekit/storage/base.py:50)",
            "instrumentation: db spans (servicekit/storage)",
        ),
        (
            "handle (/app/order_service/app.py:40);execute (/app/servicekit/storage/base.py:77)",
            None,
        ),
        (
            f"handle ({SITE}/starlette/routing.py:1);name_client_span (/app/servicekit/semconv.py)",
            "our hooks (span names, server.address, redaction, sampler)",
        ),
        # The application's own work under the middleware is not tracing.
        (
            f"__call__ ({SITE}/opentelemetry/instrumentation/asgi/__init__.py:700);"
            "place (/app/api-gateway/api_gateway/orders.py:80)",
            None,
        ),
    ],
)
def test_profile_puts_each_sample_where_its_cost_belongs(profile, frames, expected) -> None:
    assert profile.category(frames) == expected


def test_profile_table_gives_gil_ms_per_order_and_the_difference(profile) -> None:
    from collections import Counter

    traced = Counter({"SDK: spans": 30, profile.REST: 100})
    untraced = Counter({profile.REST: 80})
    lines = profile.table(traced, untraced, (100.0, 100.0))
    assert "| SDK: spans | 3.00 | 0.00 | +3.00 |" in lines
    assert f"| {profile.REST} | 10.00 | 8.00 | +2.00 |" in lines
    assert lines[-1] == "| **all** | **13.00** | **8.00** | **+5.00** |"


# With --native, py-spy adds C frames: ``function (shared object)`` or ``function (file.c:line)``.
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LIBPYTHON = "/usr/lib/libpython3.11.so.1.0"
CSRC = "/build/Python-3.11.7/Modules"
LOOP = (
    f"0x7fd1aca4524a ({LIBC});run_forever ({STDLIB}/asyncio/base_events.py:607);"
    f"Handle._run ({STDLIB}/asyncio/events.py:80);task_step ({CSRC}/_asynciomodule.c:2990)"
)


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        # Garbage collection counts as itself, whichever code allocated when it ran...
        (
            f"{LOOP};start_span ({SITE}/opentelemetry/sdk/trace/__init__.py:1100);"
            f"_PyObject_GC_Link ({LIBPYTHON});gc_collect_main ({LIBPYTHON});"
            f"visit_decref ({CSRC}/gcmodule.c:460)",
            "garbage collection (native gc frames)",
        ),
        (
            f"{LOOP};handle (/app/order_service/app.py:40);"
            f"gc_collect_with_callback ({CSRC}/gcmodule.c:1380)",
            "garbage collection (native gc frames)",
        ),
        # ... and so does a GIL hand-off.
        (
            f"{LOOP};read ({SITE}/httpcore/_async/http11.py:200);take_gil ({CSRC}/ceval_gil.c:300)",
            "GIL hand-offs (take_gil, drop_gil)",
        ),
        # getpid from asyncio's C get_running_loop (via sniffio, from httpcore): a syscall.
        (
            f"{LOOP};current_async_library ({SITE}/sniffio/_impl.py:76);"
            f"_asyncio_get_running_loop ({CSRC}/_asynciomodule.c:3160);"
            f"get_running_loop ({CSRC}/_asynciomodule.c:274);getpid ({LIBC})",
            "syscalls: getpid (asyncio's get_running_loop)",
        ),
        (
            f"{LOOP};sock_send ({STDLIB}/asyncio/selector_events.py:1100);__libc_send ({LIBC})",
            "syscalls and libc, other (socket writes, semaphores, malloc)",
        ),
        # Other native frames (the interpreter at work) count for the Python code above them:
        # tracing's categories are unchanged by them.
        (
            f"{LOOP};inject ({SITE}/opentelemetry/propagate/__init__.py:120);"
            f"PyDict_SetItem ({LIBPYTHON})",
            "API: context, propagation, current span",
        ),
        # The export thread stays separate, whatever it runs.
        (
            f"Thread.run ({STDLIB}/threading.py:982);BatchProcessor.worker ({SITE}/opentelemetry/"
            f"sdk/_shared_internal/__init__.py:162);gc_collect_main ({LIBPYTHON})",
            "export thread: batching, retries, the rest",
        ),
        # Not tracing: the innermost frame of a known group, standard library included.
        (
            f"{LOOP};handle_async_request ({SITE}/httpcore/_async/connection_pool.py:250);"
            f"_send_event ({SITE}/h11/_connection.py:500)",
            "HTTP client (httpx, httpcore, anyio, h11, aiohttp)",
        ),
        (
            f"{LOOP};send ({SITE}/httpx/_client.py:1600);"
            f"checkpoint ({SITE}/anyio/lowlevel.py:30);PyObject_Call ({LIBPYTHON})",
            "HTTP client (httpx, httpcore, anyio, h11, aiohttp)",
        ),
        (
            f"{LOOP};run_asgi ({SITE}/uvicorn/protocols/http/httptools_impl.py:400);"
            f"__call__ ({SITE}/starlette/routing.py:700);"
            f"serialize_response ({SITE}/fastapi/routing.py:150)",
            "server and framework (uvicorn, starlette, fastapi)",
        ),
        (
            f"{LOOP};serialize_response ({SITE}/fastapi/routing.py:150);"
            f"model_dump ({SITE}/pydantic/main.py:400)",
            "validation and JSON (pydantic, json, msgspec)",
        ),
        (
            f"{LOOP};place (/app/order_service/app.py:80);dumps ({STDLIB}/json/__init__.py:231);"
            f"encoder_call ({CSRC}/_json.c:1305)",
            "validation and JSON (pydantic, json, msgspec)",
        ),
        (
            f"{LOOP};place (/app/order_service/app.py:80);info ({STDLIB}/logging/__init__.py:1489)",
            "logging",
        ),
        (
            f"{LOOP};execute (/app/servicekit/storage/base.py:77);"
            f"execute ({SITE}/aiosqlite/core.py:180)",
            "sqlite",
        ),
        (
            f"{LOOP};_run_once ({STDLIB}/asyncio/base_events.py:1900);"
            f"select ({STDLIB}/selectors.py:468)",
            "event loop (asyncio, uvloop)",
        ),
        (
            f"{LOOP};place (/app/api-gateway/api_gateway/orders.py:80);"
            f"sub ({STDLIB}/re/__init__.py:185)",
            "application code (servicekit, the services)",
        ),
        (f"0x7fd1aca4524a ({LIBC});main (/opt/tool/run.py:3)", "the rest"),
    ],
)
def test_profile_with_native_frames_splits_what_is_not_tracing(profile, frames, expected) -> None:
    assert profile.classify(frames) == expected


def test_profile_counts_a_raw_file_and_orders_the_table_rows(profile, tmp_path) -> None:
    raw = tmp_path / "order-service.txt"
    raw.write_text(
        f"{LOOP};getpid ({LIBC}) 7\n"
        f"{LOOP};start_span ({SITE}/opentelemetry/sdk/trace/__init__.py:1100) 3\n"
        f"{LOOP};getpid ({LIBC}) 2\n"
        f"Thread.run ({STDLIB}/threading.py:982);BatchProcessor.worker ({SITE}/opentelemetry/"
        f"sdk/_shared_internal/__init__.py:162) 4\n"
        f"0x7fd1aca4524a ({LIBC});main (/opt/tool/run.py:3) 1\n"
    )
    found = profile.counts(raw)
    assert found == {
        profile.GETPID: 9,
        "SDK: spans, attributes, processors, sampler": 3,
        profile.EXPORT + "batching, retries, the rest": 4,
        profile.REST: 1,
    }
    rows = [line.split(" | ")[0].lstrip("| ") for line in profile.table(found, found, (1, 1))]
    assert rows[2:] == [
        "SDK: spans, attributes, processors, sampler",
        profile.EXPORT + "batching, retries, the rest",
        profile.GETPID,
        profile.REST,
        "**all**",
    ]


def test_profile_records_native_frames_and_keeps_the_raw_files(
    profile, tmp_path, monkeypatch
) -> None:
    """py-spy pauses the process to read native stacks: --native never with --nonblocking."""
    calls = tmp_path / "calls"
    fake = tmp_path / "py-spy"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'while [ "$1" != "-o" ]; do shift; done\n'
        f'echo "{LOOP};getpid ({LIBC}) 5" > "$2"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setattr(profile, "py_spy", lambda: str(fake))
    keep = tmp_path / "raw" / "on"
    found = profile.record({"order-service": 1, "api-gateway": 2}, 1, native=True, keep=keep)
    assert found == {profile.GETPID: 10}
    assert sorted(p.name for p in keep.iterdir()) == ["api-gateway.txt", "order-service.txt"]
    argv = calls.read_text().splitlines()
    assert len(argv) == 2
    assert all("--native" in a and "--gil" in a and "--nonblocking" not in a for a in argv)
    profile.record({"order-service": 1}, 1, native=False)
    assert "--nonblocking" in calls.read_text().splitlines()[-1]
    assert "--native" not in calls.read_text().splitlines()[-1]


def test_profile_native_pass_splits_the_python_rows_by_share(profile, tmp_path) -> None:
    """The native pass pauses the services and inflates every row: only its shares are used.
    Of its samples that Python frames alone put in the HTTP client, a quarter is getpid."""
    native = tmp_path / "native.txt"
    http = f"{LOOP};current_async_library ({SITE}/sniffio/_impl.py:76)"
    native.write_text(
        f"{http};get_running_loop ({CSRC}/_asynciomodule.c:274);getpid ({LIBC}) 10\n"
        f"{http} 30\n"
        f"{LOOP};start_span ({SITE}/opentelemetry/sdk/trace/__init__.py:1100);"
        f"gc_collect_main ({LIBPYTHON}) 50\n"
        f"{LOOP};start_span ({SITE}/opentelemetry/sdk/trace/__init__.py:1100) 50\n"
    )
    client = "HTTP client (httpx, httpcore, anyio, h11, aiohttp)"
    sdk = "SDK: spans, attributes, processors, sampler"
    moved = profile.moves(native)
    assert moved == {
        (client, profile.GETPID): 10,
        (client, client): 30,
        (sdk, profile.GC): 50,
        (sdk, sdk): 50,
    }
    from collections import Counter

    python = Counter({client: 8, sdk: 4, "logging": 2})
    refined = profile.refine(python, moved)
    assert refined == {client: 6, profile.GETPID: 2, sdk: 2, profile.GC: 2, "logging": 2}
    assert sum(refined.values()) == sum(python.values())
