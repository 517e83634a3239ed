"""An order placed through the real gateway, read back from the real Jaeger by its trace id.

The same telemetry contract as tests/unit/test_order_trace.py (tests/order_trace_contract.py),
but after OTLP export, the collector and Jaeger's storage: what a user sees when they open the
trace.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from stackctl.metrics import JAEGER_EXPORTER, scrape, total
from stackctl.orders import order_body
from stackctl.stack import Stack
from stackctl.traces import StoredTrace, wait_for_trace
from tests.order_trace_contract import check_order_trace, check_out_of_stock_trace, from_jaeger

SERVICES = {"api-gateway", "inventory-service", "order-service", "notification-service"}
EMAIL = "customer@example.com"
EMAIL_PATTERN = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def kind(span: dict) -> str | None:
    return StoredTrace.tags(span).get("span.kind")


@pytest.fixture(scope="module")
def placed(stack: Stack) -> tuple[httpx.Response, StoredTrace]:
    response = httpx.post(f"{stack.gateway_url}/api/orders", json=order_body(quantity=2))
    trace = wait_for_trace(
        stack.jaeger_url,
        response.json()["traceId"],
        SERVICES,
        frozenset({"process_order", "send_notification"}),
    )
    return response, trace


def test_order_answers_with_its_trace_id(placed: tuple[httpx.Response, StoredTrace]) -> None:
    response, trace = placed
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "confirmed" and body["total"] == 100.0
    assert body["traceId"] in response.headers["traceresponse"]
    assert trace.raw["traceID"] == body["traceId"]


def test_trace_is_the_order_trace_contract(stack: Stack, placed) -> None:
    response, trace = placed
    check_order_trace(from_jaeger(trace), response.json()["orderId"], item_count=2)
    [process] = [s for s in trace.spans if s["operationName"] == "process_order"]
    assert StoredTrace.tags(process)["order.total"] == 100.0
    for span in trace.spans:  # server.address is the host alone, server.port its port
        tags = StoredTrace.tags(span)
        if "http.request.method" not in tags:
            continue
        server = f"http://{tags['server.address']}:{tags['server.port']}"
        if tags["span.kind"] == "server":
            assert server == stack.service_url(trace.service_of(span)), span["operationName"]
        else:
            assert str(tags["url.full"]).startswith(f"{server}/"), span["operationName"]


def test_resource_attributes_reach_jaeger(placed) -> None:
    _, trace = placed
    for process in trace.raw["processes"].values():
        tags = {t["key"]: t["value"] for t in process["tags"]}
        assert tags["deployment.environment.name"] == "local"
        assert tags["service.version"] and tags["service.instance.id"]


def test_out_of_stock_trace_has_the_inventory_error(stack: Stack) -> None:
    response = httpx.post(f"{stack.gateway_url}/api/orders", json=order_body("OUT-OF-STOCK"))
    assert response.status_code == 400
    assert response.json()["sku"] == "OUT-OF-STOCK"
    trace = wait_for_trace(
        stack.jaeger_url, response.json()["traceId"], {"api-gateway", "inventory-service"}
    )
    check_out_of_stock_trace(from_jaeger(trace), "OUT-OF-STOCK")


def test_no_pii_anywhere_in_the_trace(placed) -> None:
    _, trace = placed
    text = json.dumps(trace.raw)
    assert EMAIL not in text
    assert not EMAIL_PATTERN.search(text)


def test_collector_refused_and_failed_nothing(stack: Stack, placed) -> None:
    """The collector accepted every span the services sent and exported all of them to Jaeger."""
    deadline = time.monotonic() + 15
    while True:
        samples = scrape(stack.collector_metrics_url)
        accepted = total(samples, "otelcol_receiver_accepted_spans_total")
        sent = total(samples, "otelcol_exporter_sent_spans_total", exporter=JAEGER_EXPORTER)
        if (accepted > 0 and sent == accepted) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert accepted >= len(placed[1].spans)
    assert sent == accepted
    for counter in (
        "otelcol_receiver_refused_spans",
        "otelcol_receiver_failed_spans",
        "otelcol_processor_memory_limiter_refused_spans",
        "otelcol_exporter_send_failed_spans",
        "otelcol_exporter_enqueue_failed_spans",
    ):
        assert total(samples, counter) == 0, counter


def test_spanmetrics_give_red_metrics_per_service(stack: Stack) -> None:
    """Calls and errors per service from the spanmetrics connector (what Prometheus scrapes)."""
    httpx.post(f"{stack.gateway_url}/api/orders", json=order_body()).raise_for_status()
    httpx.post(f"{stack.gateway_url}/api/orders", json=order_body("OUT-OF-STOCK"))
    deadline = time.monotonic() + 20  # the e2e stack's connector flushes every second
    while True:
        samples = scrape(stack.spanmetrics_url)
        calls = {
            service: total(
                samples,
                "traces_span_metrics_calls_total",
                service_name=service,
                span_kind="SPAN_KIND_SERVER",
            )
            for service in SERVICES
        }
        errors = total(
            samples,
            "traces_span_metrics_calls_total",
            service_name="inventory-service",
            status_code="STATUS_CODE_ERROR",
        )
        if (all(calls.values()) and errors) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(value >= 1 for value in calls.values()), calls
    assert errors >= 1
    assert total(samples, "traces_span_metrics_duration_milliseconds_count") > 0
