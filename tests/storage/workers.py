"""What each OS process of the cross-process tests runs (spawned: module-level functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from api_gateway.compensation import SCHEMA as BACKLOG_SCHEMA
from api_gateway.idempotency import SCHEMA as KEYS_SCHEMA
from api_gateway.idempotency import IdempotencyStore, add_lease_columns
from inventory_service.store import SCHEMA as INVENTORY_SCHEMA
from inventory_service.store import SEEDS, InsufficientStock, InventoryStore
from servicekit.problems import ProblemError
from tests.storage.conftest import open_db


def reserve_many(url: str, barrier: Any, name: str, lines: list[tuple[str, int]], n: int) -> int:
    """``n`` reservations of ``lines`` (ids ``name-i``) once every process is ready: how many
    were taken."""
    store = InventoryStore(open_db(url, Path("."), "inventory_service", INVENTORY_SCHEMA, SEEDS))
    barrier.wait()
    taken = 0
    for i in range(n):
        try:
            store.reserve(f"{name}-{i}", lines)
            taken += 1
        except InsufficientStock:
            pass
    store.db.close()
    return taken


def claim_keys(url: str, barrier: Any, owner: str, keys: list[str]) -> dict[str, str]:
    """Claim each key once every process is ready: ``claimed`` or the refusal's status."""
    db = open_db(
        url, Path("."), "api_gateway", KEYS_SCHEMA + BACKLOG_SCHEMA, (), (add_lease_columns,)
    )
    store = IdempotencyStore(db, lease_seconds=60, takeover_grace=5, owner=owner)
    barrier.wait()
    outcome: dict[str, str] = {}
    for key in keys:
        try:
            claim = store.claim(key, "f", f"{owner}-{key}")
            outcome[key] = "claimed" if claim.order_id == f"{owner}-{key}" else "other"
        except ProblemError as exc:
            outcome[key] = str(exc.status)
    db.close()
    return outcome


def set_up(url: str, barrier: Any) -> str:
    """Open (create, seed, migrate) both schemas at once with the other processes."""
    barrier.wait()
    open_db(url, Path("."), "inventory_service", INVENTORY_SCHEMA, SEEDS).close()
    open_db(
        url, Path("."), "api_gateway", KEYS_SCHEMA + BACKLOG_SCHEMA, (), (add_lease_columns,)
    ).close()
    return "ok"
