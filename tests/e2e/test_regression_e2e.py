"""`make demo-regression` against the real stack: orders, then the same orders with a latency
fault in inventory-service; analyze_traces.py compares the two windows live in Jaeger and
must name inventory-service's operation, and nothing for errors."""

from __future__ import annotations

import httpx

from stackctl.regression_demo import check, compare_windows
from stackctl.stack import Stack
from tests.e2e.conftest import ADMIN_TOKEN

ORDERS = 40  # per window: above the analyzer's 30-sample minimum, bounded


def test_the_faulted_services_operation_is_named(stack: Stack, gateway: httpx.Client) -> None:
    lines: list[str] = []
    table, report = compare_windows(
        stack, ADMIN_TOKEN, "inventory-service", 200, ORDERS, 4, say=lines.append
    )
    faults = gateway.get(
        "/api/admin/faults/inventory-service",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert faults.json()["faults"] == [], "the demo clears its fault"

    comparison = report["comparison"]
    assert check(comparison, "inventory-service") == [], table
    assert comparison["baseline"]["traces"] >= ORDERS
    assert comparison["candidate"]["traces"] >= ORDERS
    ops = {(op["service"], op["operation"]): op for op in comparison["operations"]}
    reserve = ops[("inventory-service", "POST /inventory/reserve")]
    assert reserve["regressed"] and reserve["reason"] == "latency", table
    assert reserve["change"]["p50_ms"] > 150
    root = ops[("api-gateway", "POST /api/orders")]
    assert root["regressed"] and root["entry"], table
    top = root["attribution"][0]
    assert (top["service"], top["operation"]) == ("inventory-service", "POST /inventory/reserve")
    assert top["change_ms"] > 150
    # no service without the fault is named as a cause of anything
    for op in comparison["operations"]:
        for contributor in op["attribution"]:
            if contributor["change_ms"] > 20:
                assert contributor["service"] == "inventory-service", op
    assert "Where the time went" in table and "inventory-service POST /inventory/reserve" in table
