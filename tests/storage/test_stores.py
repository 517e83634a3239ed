"""The stores on both backends (SQLite in-process, PostgreSQL real): one SQL, one behaviour."""

from __future__ import annotations

import math
import time
from decimal import Decimal
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api_gateway.compensation import SCHEMA as BACKLOG_SCHEMA
from api_gateway.compensation import release_backlog
from api_gateway.idempotency import HEARTBEAT_SECONDS, IdempotencyStore, add_lease_columns
from api_gateway.idempotency import SCHEMA as KEYS_SCHEMA
from inventory_service.store import (
    SCHEMA as INVENTORY_SCHEMA,
)
from inventory_service.store import (
    SEED_STOCK,
    SEEDS,
    InsufficientStock,
    InventoryStore,
    UnknownSku,
)
from order_service.models import CreateOrder
from order_service.store import SCHEMA as ORDER_SCHEMA
from order_service.store import OrderStore
from servicekit.problems import ProblemError
from tests.storage.conftest import open_db

GATEWAY_SCHEMA = KEYS_SCHEMA + BACKLOG_SCHEMA


def inventory(url: str, tmp_path: Path) -> InventoryStore:
    return InventoryStore(open_db(url, tmp_path, "inventory_service", INVENTORY_SCHEMA, SEEDS))


def gateway_db(url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_db(url, tmp_path, "api_gateway", GATEWAY_SCHEMA, migrations=(add_lease_columns,))


def test_the_seeded_catalogue_is_there_once_however_often_it_is_opened(
    database_url: str, tmp_path: Path
) -> None:
    first = inventory(database_url, tmp_path)
    first.reserve("r-1", [("SKU789", 2)])
    second = inventory(database_url, tmp_path)  # a restart: the seeds change nothing
    assert second.stock("SKU789") == (SEED_STOCK["SKU789"] - 2, Decimal("3.50"))
    assert second.stock("SKU123") == (SEED_STOCK["SKU123"], Decimal("50.00"))
    assert second.stock("NO-SUCH-SKU") is None
    with second.db.read(traced=False) as cur:
        assert cur.execute("SELECT count(*) AS n FROM stock").fetchone()["n"] == len(SEED_STOCK)
    first.db.close()
    second.db.close()


def test_a_reservation_takes_every_line_or_none_and_is_released_once(
    database_url: str, tmp_path: Path
) -> None:
    store = inventory(database_url, tmp_path)
    with pytest.raises(InsufficientStock) as short:
        store.reserve("r-1", [("SKU789", 1), ("LIMITED-EDITION", 6)])
    assert (short.value.sku, short.value.available) == ("LIMITED-EDITION", 5)
    assert store.stock("SKU789") == (500, Decimal("3.50")), "the first line was rolled back"
    with pytest.raises(UnknownSku):
        store.reserve("r-1", [("SKU789", 1), ("NO-SUCH-SKU", 1)])

    status, lines = store.reserve("r-2", [("SKU789", 1), ("LIMITED-EDITION", 2), ("SKU789", 1)])
    assert status == "reserved"
    assert lines == [("SKU789", 2, Decimal("3.50")), ("LIMITED-EDITION", 2, Decimal("499.99"))]
    repeated = store.reserve("r-2", [("SKU789", 9)])
    assert (repeated[0], sorted(repeated[1])) == (status, sorted(lines)), "the first outcome"
    assert store.stock("LIMITED-EDITION") == (3, Decimal("499.99"))

    assert store.release("r-2") == ("released", [("LIMITED-EDITION", 2), ("SKU789", 2)])
    assert store.release("r-2")[0] == "released"
    assert store.stock("LIMITED-EDITION") == (5, Decimal("499.99")), "given back once"
    assert store.reserve("r-2", [("SKU789", 1)])[0] == "released"
    assert store.release("never-reserved") == ("unknown", [])
    store.db.close()


def test_an_order_is_stored_once_read_back_and_deleted_once(
    database_url: str, tmp_path: Path
) -> None:
    store = OrderStore(open_db(database_url, tmp_path, "order_service", ORDER_SCHEMA))
    body = CreateOrder.model_validate(
        {
            "orderId": "o-1",
            "userId": 7,
            "reservationId": "o-1",
            "items": [{"sku": "SKU789", "quantity": 3, "price": "3.50"}],
        }
    )
    order, created = store.create(body, Decimal("10.50"))
    assert created and order.total == Decimal("10.50") and order.userId == 7
    assert order.items[0].price == Decimal("3.50")
    assert order.createdAt.endswith("Z") and "T" in order.createdAt
    again, created_again = store.create(body, Decimal("99.00"))
    assert not created_again and again == order
    assert store.get("o-1") == order
    assert store.delete("o-1") and not store.delete("o-1")
    assert store.get("o-1") is None
    store.db.close()


def test_an_idempotency_key_is_claimed_once_replayed_and_refused_for_another_body(
    database_url: str, tmp_path: Path
) -> None:
    db = gateway_db(database_url, tmp_path)
    store = IdempotencyStore(db, lease_seconds=60, takeover_grace=5, owner="a")
    assert store.claim("k", "f", "order-1").order_id == "order-1"
    with pytest.raises(ProblemError) as busy:
        store.claim("k", "f", "order-2")
    assert (busy.value.status, busy.value.headers["Retry-After"]) == (409, "1")
    with pytest.raises(ProblemError) as reused:
        store.claim("k", "other body", "order-3")
    assert reused.value.status == 422
    store.complete("k", {"orderId": "order-1"})
    assert store.claim("k", "f", "order-4").replay == {"orderId": "order-1"}

    store.claim("k2", "f", "order-5")
    store.abandon("k2")
    assert store.state("k2") is None
    assert store.claim("k2", "f", "order-6").order_id == "order-6", "freed: claimed afresh"
    db.close()


def test_a_lease_past_its_deadline_is_taken_over_by_one_other_owner(
    database_url: str, tmp_path: Path
) -> None:
    db = gateway_db(database_url, tmp_path)
    clock = [time.time()]
    dead = IdempotencyStore(db, 10, 5, owner="dead", clock=lambda: clock[0])
    dead.claim("k", "f", "order-1")
    alive = IdempotencyStore(db, 10, 5, owner="alive", clock=lambda: clock[0])
    other = IdempotencyStore(db, 10, 5, owner="other", clock=lambda: clock[0])
    with pytest.raises(ProblemError) as busy:
        alive.claim("k", "f", "order-2")
    assert int(busy.value.headers["Retry-After"]) > 1  # another owner's deadline
    clock[0] += 60
    alive.heartbeat(), other.heartbeat()  # their periodic beats (a shared store)
    claim = alive.claim("k", "f", "order-2")
    assert (claim.order_id, claim.taken_over) == ("order-1", True)
    with pytest.raises(ProblemError):
        other.claim("k", "f", "order-3")
    dead.complete("k", {"late": True})  # the dead owner's late write does not land
    assert alive.state("k")["owner"] == "alive"
    db.close()


def test_start_up_adopts_orphans_only_where_the_store_is_its_own(
    database_url: str, tmp_path: Path
) -> None:
    db = gateway_db(database_url, tmp_path)
    IdempotencyStore(db, 60, 5, owner="earlier").claim("k", "f", "order-1")
    restarted = IdempotencyStore(db, 60, 5, owner="later")
    # SQLite: the earlier process is dead. PostgreSQL: other gateways may be alive.
    assert restarted.orphaned == (0 if db.shared else 1)
    db.close()


def test_a_key_table_from_before_leases_is_migrated(database_url: str, tmp_path: Path) -> None:
    old = """CREATE TABLE IF NOT EXISTS idempotency_keys (key TEXT PRIMARY KEY,
        request_hash TEXT NOT NULL, state TEXT NOT NULL, response TEXT, created_at TEXT);"""
    open_db(database_url, tmp_path, "api_gateway", old).close()
    db = gateway_db(database_url, tmp_path)
    with db.transaction() as cur:
        cur.execute(
            "INSERT INTO idempotency_keys (key, request_hash, state) VALUES (?, ?, 'in_progress')",
            ("k", "f"),
        )
    store = IdempotencyStore(db, lease_seconds=60, takeover_grace=0, owner="new")
    claim = store.claim("k", "f", "fresh-id")
    assert (claim.order_id, claim.taken_over) == ("fresh-id", True)
    db.close()
    gateway_db(database_url, tmp_path).close()  # migrating again changes nothing


def test_the_compensation_backlog_keeps_each_id_once_oldest_first(
    database_url: str, tmp_path: Path
) -> None:
    db = gateway_db(database_url, tmp_path)
    releases = release_backlog(db)
    for item in ("r-1", "r-2", "r-1", "r-3"):
        releases.add(item)
    assert releases.count == 3
    assert releases.ids() == ["r-1", "r-2", "r-3"]
    assert releases.ids(limit=2) == ["r-1", "r-2"]
    releases.remove("r-2")
    assert releases.ids() == ["r-1", "r-3"] and releases.count == 2
    db.close()
    reopened = gateway_db(database_url, tmp_path)
    assert release_backlog(reopened).ids() == ["r-1", "r-3"], "durable"
    reopened.close()


def test_on_a_shared_store_a_lease_whose_owner_stopped_beating_is_taken_over(
    pg_url: str, tmp_path: Path
) -> None:
    """Before its deadline: the owner's heartbeat ran out (it died), or not (it lives)."""
    db = gateway_db(pg_url, tmp_path)
    clock = [time.time()]
    dead = IdempotencyStore(db, 60, 5, owner="dead", clock=lambda: clock[0])
    live = IdempotencyStore(db, 60, 5, owner="live", clock=lambda: clock[0])
    retrier = IdempotencyStore(db, 60, 5, owner="retrier", clock=lambda: clock[0])
    assert dead.heartbeat_ttl == 5 + 2 * HEARTBEAT_SECONDS
    dead.claim("of-the-dead", "f", "order-1")
    live.claim("of-the-living", "f", "order-2")
    with pytest.raises(ProblemError) as soon:
        retrier.claim("of-the-dead", "f", "order-3")
    assert soon.value.headers["Retry-After"] == str(math.ceil(dead.heartbeat_ttl))
    clock[0] += dead.heartbeat_ttl
    live.heartbeat(), retrier.heartbeat()
    claim = retrier.claim("of-the-dead", "f", "order-3")
    assert (claim.order_id, claim.taken_over) == ("order-1", True)
    with pytest.raises(ProblemError) as busy:
        retrier.claim("of-the-living", "f", "order-4")
    assert int(busy.value.headers["Retry-After"]) == math.ceil(live.heartbeat_ttl)
    db.close()


@pytest.mark.anyio
async def test_a_call_runs_on_the_loop_for_sqlite_and_in_the_pool_for_postgresql(
    database_url: str, tmp_path: Path
) -> None:
    import threading

    db = open_db(database_url, tmp_path, "calls", "CREATE TABLE IF NOT EXISTS t (n INTEGER)")

    def insert_and_count(n: int) -> tuple[int, int]:
        with db.transaction() as cur:
            cur.execute("INSERT INTO t (n) VALUES (?)", (n,))
        with db.read() as cur:
            cur.execute("SELECT count(*) AS n FROM t")
            return threading.get_ident(), cur.fetchone()["n"]

    try:
        loop_thread = threading.get_ident()
        ran_on, count = await db.call(insert_and_count, 1)
        ran_on, count = await db.call(insert_and_count, n=2)
    finally:
        db.close()
    assert count == 2
    # SQLite's statements take microseconds: a thread hop would cost more than they do.
    assert (ran_on == loop_thread) is (db.system == "sqlite")


def test_database_thread_pool_always_sends_sqlite_calls_to_the_pool(tmp_path: Path) -> None:
    from inventory_service.app import InventorySettings, create_app

    for choice, inline in (("auto", True), ("always", False)):
        settings = InventorySettings(data_dir=tmp_path / choice, database_thread_pool=choice)
        # An in-memory exporter: the default OTLP one would try localhost:4317 at exit.
        app = create_app(settings, exporter=InMemorySpanExporter())
        assert app.state.store.db.inline is inline, choice
        for hook in app.shutdown_hooks:
            hook()
