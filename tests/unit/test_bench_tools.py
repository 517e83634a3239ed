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
