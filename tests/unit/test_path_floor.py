"""The order path's floor (benchmarks/path_floor.py): its arithmetic, its bare apps, and that its
SQL part runs exactly the statements an order runs; and how benchmarks/overhead.py reports it."""

from __future__ import annotations

import json
from types import ModuleType

import httpx
import pytest

from stackctl.orders import order_body
from tests.bench_modules import bench_module
from tests.unit.conftest import InProcessStack

ORDER = order_body(price=9.5, email="bench@example.com")  # benchmarks/overhead.py's ORDER


@pytest.fixture(scope="module")
def floor() -> ModuleType:
    return bench_module("path_floor")


@pytest.fixture(scope="module")
def overhead() -> ModuleType:
    return bench_module("overhead")


def result(floor: ModuleType, hop: float, call: float, sql: float) -> dict:
    return {
        "hop_ms": hop,
        "call_ms": call,
        "sql_ms": sql,
        "statements": 6,
        "statement_names": ["UPDATE stock", "INSERT orders"],
        "hops": floor.HOPS,
        "calls": floor.CALLS,
        "connections": 8,
        "floor_ms": floor.floor_ms(hop, call, sql),
    }


def test_an_order_is_four_hops_three_calls_and_its_statements(floor) -> None:
    assert (floor.HOPS, floor.CALLS) == (4, 3)
    assert floor.floor_ms(0.25, 1.5, 0.4) == pytest.approx(4 * 0.25 + 3 * 1.5 + 0.4)
    assert floor.floor_ms(0, 0, 0) == 0


def test_cpu_per_request_is_milliseconds_and_refuses_no_requests(floor) -> None:
    assert floor.cpu_per_request(0.5, 1000) == pytest.approx(0.5)
    assert floor.cpu_per_request(3.0, 1500) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        floor.cpu_per_request(0.5, 0)


@pytest.mark.parametrize(
    ("untraced", "ratio", "verdict"),
    [
        (9.0, "1.50x", "| met |"),
        (9.1, "1.52x", "| **not met** |"),
        (20.0, "3.33x", "| **not met** |"),
    ],
)
def test_the_goal_row_gives_the_multiple_and_its_verdict(floor, untraced, ratio, verdict) -> None:
    figures = result(floor, 0.5, 1.0, 1.0)  # 2 + 3 + 1 = 6 ms
    row = floor.goal_row(figures, untraced)
    assert row.startswith("| the services' untraced CPU per order at most 1.5x")
    assert f"| {ratio} ({untraced:.2f} of 6.00 ms) " in row
    assert row.endswith(verdict)


def test_no_floor_is_no_multiple(floor) -> None:
    assert floor.multiple(5.0, 0.0) == float("inf")


def test_the_table_has_every_part_the_floor_and_the_multiple(floor) -> None:
    lines = floor.table(result(floor, 0.3, 1.5, 0.45), 16.0)
    text = "\n".join(lines)
    assert lines[0].startswith("| per order (CPU ms) |")
    assert "| 0.300 | 4 x = 1.20 |" in text
    assert "| 1.500 | 3 x = 4.50 |" in text
    assert "SQL statements (6: `UPDATE stock`, `INSERT orders`) | | 0.45 |" in text
    assert "**6.15**" in text
    assert "16.00 (**2.60x** the floor)" in text


@pytest.mark.anyio
async def test_sql_part_runs_the_statements_of_an_order(floor, stack: InProcessStack) -> None:
    """What the in-process stack's stores run for one order is what the floor replays."""
    response = await stack.client.post("/api/orders", json=ORDER)
    assert response.status_code == 201, response.text
    placed = [
        span.name
        for span in stack.spans(response.json()["traceId"])
        if span.instrumentation_scope and span.instrumentation_scope.name == "servicekit.storage"
    ]
    replayed = floor.order_statements(ORDER)
    assert len(replayed) == 6
    assert replayed == placed


@pytest.mark.anyio
async def test_bare_hop_validates_the_order_and_answers_201(floor) -> None:
    app = floor.build_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bare") as client:
        ok = await client.post("/api/orders", json=ORDER)
        bad = await client.post("/api/orders", json={**ORDER, "items": "none"})
    assert (ok.status_code, ok.json()) == (201, {"status": "confirmed"})
    assert bad.status_code == 422


@pytest.mark.anyio
async def test_hop_with_a_call_posts_the_order_downstream_once(floor, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    seen: list[httpx.Request] = []

    def callee(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"status": "confirmed"})

    app = floor.build_app("http://callee", transport=httpx.MockTransport(callee))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bare") as client:
        response = await client.post("/api/orders", json=ORDER)
    assert response.status_code == 201
    [call] = seen
    assert (call.method, call.url.path) == ("POST", "/api/orders")
    assert json.loads(call.content) == ORDER


def test_overhead_reports_the_floor_against_the_untraced_rounds(floor, overhead) -> None:
    def round_(mode: str, number: int, services_cpu_s: float) -> object:
        cpu = {name: services_cpu_s / 4 for name in overhead.SERVICES}
        wrk = {"requests": 1000, "duration_us": 10_000_000}
        return overhead.Round(mode, 8, 10.0, wrk, cpu, 0.0, number)

    # The untraced rounds spend 12, 18 and 15 ms per order: the median is 15.
    heavy = [
        round_("off", 0, 12.0),
        round_("on", 0, 30.0),
        round_("off", 1, 18.0),
        round_("off", 2, 15.0),
    ]
    assert overhead.untraced_cpu(heavy) == pytest.approx(15.0)
    figures = result(floor, 0.5, 1.0, 1.0)
    lines = overhead.path_lines(figures, heavy)
    assert "### What an order's parts cost bare: the order path's floor" in lines
    assert any("15.00 (**2.50x** the floor)" in line for line in lines)
    assert overhead.path_lines(None, heavy) == []
