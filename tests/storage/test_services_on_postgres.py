"""The four services on one PostgreSQL, in one process (tests/unit/conftest.py's stack): the
order trace keeps its contract, the statements' spans say where they ran and never carry the
password, and a compensation one gateway left is carried out by another's periodic sweep."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from api_gateway.app import GatewaySettings
from api_gateway.app import create_app as create_gateway
from servicekit.catalog import SERVICES
from servicekit.logs import configure_logging
from servicekit.storage.postgres import connection_attributes
from tests.order_trace_contract import check_order_trace, from_sdk
from tests.postgres import Cluster
from tests.storage.conftest import open_db, shut_down
from tests.unit.conftest import ORDER, InProcessStack, build_stack

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pg_stack(tmp_path: Path, pg_url: str) -> AsyncIterator[InProcessStack]:
    overrides = {spec.name: {"database_url": pg_url} for spec in SERVICES}
    stack = build_stack(tmp_path, overrides=overrides)
    yield stack
    await stack.client.aclose()
    await shut_down(list(stack.apps.values()))


def everything_exported(stack: InProcessStack) -> str:
    """Every span's name, attributes, events and resource, as text."""
    return json.dumps(
        [
            [
                s.name,
                dict(s.attributes or {}),
                [[e.name, dict(e.attributes or {})] for e in s.events],
                dict(s.resource.attributes),
            ]
            for s in stack.spans()
        ],
        default=str,
    )


async def test_an_order_on_postgresql_is_one_complete_trace(
    pg_stack: InProcessStack, pg_url: str, postgres: Cluster
) -> None:
    response = await pg_stack.client.post("/api/orders", json=ORDER)
    assert response.status_code == 201, response.text
    body = response.json()
    spans = pg_stack.spans(body["traceId"])
    check_order_trace(from_sdk(spans), body["orderId"], item_count=2, db_system="postgresql")
    database = pg_url.rsplit("/", 1)[1]
    packages = {spec.name: spec.package for spec in SERVICES}
    db_spans = [s for s in spans if s.attributes and "db.system.name" in s.attributes]
    assert len(db_spans) == 6
    for span in db_spans:
        service = span.resource.attributes["service.name"]
        assert span.attributes["db.namespace"] == f"{database}|{packages[service]}"
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == postgres.port
    notifier = pg_stack.apps["notification-service"].state.notifier
    with notifier.db.read(traced=False) as cur:
        assert cur.execute("SELECT count(*) AS n FROM notifications").fetchone()["n"] == 1
    order = await pg_stack.client.get(f"/api/orders/{body['orderId']}")
    assert order.status_code == 200 and order.json()["total"] == body["total"]


async def test_the_password_is_in_no_span_and_no_log_line(
    pg_stack: InProcessStack, postgres: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("api-gateway", "DEBUG")
    try:
        with caplog.at_level(logging.DEBUG):
            await pg_stack.client.post("/api/orders", json=ORDER)
            bad = {**ORDER, "items": [{"sku": "OUT-OF-STOCK", "quantity": 1, "price": 1}]}
            assert (await pg_stack.client.post("/api/orders", json=bad)).status_code == 400
    finally:
        logging.getLogger().handlers.clear()
    assert postgres.password not in everything_exported(pg_stack)
    assert postgres.password not in caplog.text
    assert postgres.password not in repr(GatewaySettings(database_url=postgres.url()))


def test_a_failing_statement_records_its_sqlstate(pg_url: str, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    db = open_db(
        pg_url,
        tmp_path,
        "shop",
        "CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY);",
        provider=provider,
    )
    with db.transaction() as cur:
        cur.execute("INSERT INTO stock (sku) VALUES (?)", ("a",))
    with pytest.raises(Exception, match="duplicate key"), db.transaction() as cur:
        cur.execute("INSERT INTO stock (sku) VALUES (?)", ("a",))
    db.close()
    ok, failed = exporter.get_finished_spans()
    assert (ok.name, failed.name) == ("INSERT stock", "INSERT stock")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "psycopg.errors.UniqueViolation"
    assert failed.attributes["db.response.status_code"] == "23505"
    assert failed.attributes["db.query.text"] == "INSERT INTO stock (sku) VALUES (?)"
    assert failed.attributes["db.system.name"] == "postgresql"


def test_connection_attributes_name_the_server_not_the_user() -> None:
    url = "postgresql://app:s3cret@db.internal:6543/shop"
    assert connection_attributes(url, "order_service") == {
        "db.namespace": "shop|order_service",
        "server.address": "db.internal",
        "server.port": 6543,
    }
    local = connection_attributes("postgresql://app:s3cret@/shop?host=/run/postgresql", "x")
    assert local == {"db.namespace": "shop|x"}, "a unix socket is no server address"


async def test_another_gateways_backlog_entry_is_carried_out_by_the_periodic_sweep(
    pg_stack: InProcessStack, pg_url: str, tmp_path: Path
) -> None:
    inventory = pg_stack.apps["inventory-service"].state.store
    before = inventory.stock("SKU789")[0]
    inventory.reserve("left-behind", [("SKU789", 4)])
    # A second gateway process on the same store: its release failed, it went away.
    other = create_gateway(
        GatewaySettings(data_dir=tmp_path / "other", database_url=pg_url),
        InMemorySpanExporter(),
        pg_stack.transports,
    )
    other.state.flow.releases.add("left-behind")
    await shut_down([other])
    sweeper = pg_stack.apps["api-gateway"].state.flow
    assert sweeper.releases.count == 1, "seen by the other gateway"

    await sweeper.sweep()
    assert sweeper.releases.ids() == [] and sweeper.releases.count == 0
    assert inventory.stock("SKU789")[0] == before, "released"
    [sweep] = [s for s in pg_stack.spans() if s.name == "compensation_sweep"]
    assert sweep.parent is None and sweep.attributes["compensation.pending_releases"] == 1
    [release] = [s for s in pg_stack.spans() if s.name == "compensate_reservation"]
    assert release.parent is not None and release.parent.span_id == sweep.context.span_id

    pg_stack.exporter.clear()
    await sweeper.sweep()  # nothing pending: no span
    assert pg_stack.spans() == []
