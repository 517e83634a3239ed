"""Several OS processes on one PostgreSQL: what makes the shared store correct.

Each test starts real processes (multiprocessing, spawned) released together by a barrier, so
their transactions overlap; the outcomes are counted exactly, not timed.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from inventory_service.store import SCHEMA as INVENTORY_SCHEMA
from inventory_service.store import SEED_STOCK, SEEDS, InventoryStore
from tests.storage import workers
from tests.storage.conftest import open_db

SPAWN = multiprocessing.get_context("spawn")


def run_together(count: int, job: Callable[..., Any], *args_per_process: tuple[Any, ...]) -> list:
    """``job(url-and-args..., barrier, ...)`` in ``count`` processes at once: their results."""
    with SPAWN.Manager() as manager, ProcessPoolExecutor(count, mp_context=SPAWN) as pool:
        barrier = manager.Barrier(count)
        futures = [pool.submit(job, args[0], barrier, *args[1:]) for args in args_per_process]
        return [future.result(timeout=120) for future in futures]


def test_concurrent_reservations_across_processes_never_oversell(pg_url: str) -> None:
    store = InventoryStore(open_db(pg_url, Path("."), "inventory_service", INVENTORY_SCHEMA, SEEDS))
    initial = 70
    with store.db.transaction() as cur:
        cur.execute(
            "UPDATE stock SET available = ? WHERE sku IN (?, ?)", (initial, "SKU456", "SKU789")
        )
    # Three processes, 50 reservations each of two skus, the lines in opposite orders: 150
    # attempts for 70 units, and no deadlock between two reservations of the same skus.
    lines = [("SKU456", 1), ("SKU789", 1)]
    taken = run_together(
        3,
        workers.reserve_many,
        (pg_url, "a", lines, 50),
        (pg_url, "b", lines[::-1], 50),
        (pg_url, "c", lines, 50),
    )
    with store.db.read(traced=False) as cur:
        confirmed = cur.execute(
            "SELECT count(DISTINCT reservation_id) AS n FROM reservations WHERE status = 'reserved'"
        ).fetchone()["n"]
    for sku in ("SKU456", "SKU789"):
        available = store.stock(sku)[0]
        assert confirmed + available == initial, sku
    assert sum(taken) == confirmed == initial, taken
    store.db.close()


def test_two_processes_claiming_the_same_keys_get_exactly_one_claim_each(pg_url: str) -> None:
    keys = [f"key-{i}" for i in range(60)]
    first, second = run_together(
        2, workers.claim_keys, (pg_url, "gw-1", keys), (pg_url, "gw-2", keys)
    )
    for key in keys:
        outcomes = sorted((first[key], second[key]))
        assert outcomes == ["409", "claimed"], (key, outcomes)


def test_four_processes_setting_up_one_fresh_database_at_once(pg_url: str) -> None:
    assert run_together(4, workers.set_up, *[(pg_url,)] * 4) == ["ok"] * 4
    store = InventoryStore(open_db(pg_url, Path("."), "inventory_service", INVENTORY_SCHEMA, SEEDS))
    with store.db.read(traced=False) as cur:
        assert cur.execute("SELECT count(*) AS n FROM stock").fetchone()["n"] == len(SEED_STOCK)
    assert store.stock("SKU789")[0] == SEED_STOCK["SKU789"], "seeded once"
    store.db.close()
