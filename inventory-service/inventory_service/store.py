"""Stock, prices and reservations (:mod:`servicekit.storage`): inventory-service is the catalogue.

A reservation is one transaction with one conditional ``UPDATE`` per line
(``... WHERE available >= quantity``): either every line is taken or the whole transaction rolls
back, and stock can never go negative whatever the concurrency, in one process or many. SQLite
serialises writers (``BEGIN IMMEDIATE``); on PostgreSQL the ``UPDATE`` takes the row's lock and,
under READ COMMITTED, re-checks its ``WHERE`` against the row a concurrent reservation committed,
so that condition stays the guard. Lines are taken in sku order, so two reservations of the same
skus lock them in one order and never deadlock; a repeated ``reservation_id`` is serialised on
its id (:meth:`~servicekit.storage.Cursor.lock`), so the second sees the first's outcome.
Each reserved line carries its unit price from the ``prices`` table, read in the same
transaction: the price an order is charged is the catalogue's, never the caller's. Prices are
kept as decimal text (``"50.00"``) and read back as ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from opentelemetry import trace

from servicekit.deadline import check_deadline
from servicekit.redaction import RESERVATION_ID_HASH, order_id_hash
from servicekit.storage import UTC_NOW, Cursor, Database, Seed

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS stock (
    sku TEXT PRIMARY KEY,
    available INTEGER NOT NULL CHECK (available >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'reserved',
    created_at TEXT NOT NULL DEFAULT {UTC_NOW},
    PRIMARY KEY (reservation_id, sku)
);
CREATE TABLE IF NOT EXISTS prices (
    sku TEXT PRIMARY KEY,
    price TEXT NOT NULL
);
"""

# The seeded catalogue: stock and unit price. SKU123 (50.00) and OUT-OF-STOCK are the ones the
# README's examples use.
SEED_STOCK = {
    "SKU123": 1_000_000,
    "SKU456": 10_000,
    "SKU789": 500,
    "LIMITED-EDITION": 5,
    "OUT-OF-STOCK": 0,
}
SEED_PRICES = {
    "SKU123": "50.00",
    "SKU456": "12.50",
    "SKU789": "3.50",
    "LIMITED-EDITION": "499.99",
    "OUT-OF-STOCK": "50.00",
}
ReservedLine = tuple[str, int, Decimal]  # sku, quantity, unit price


class UnknownSku(Exception):
    def __init__(self, sku: str) -> None:
        super().__init__(f"unknown sku {sku}")
        self.sku = sku


class InsufficientStock(Exception):
    def __init__(self, sku: str, requested: int, available: int) -> None:
        super().__init__(
            f"insufficient stock for {sku}: requested {requested}, available {available}"
        )
        self.sku = sku
        self.requested = requested
        self.available = available


# Run with the schema at start-up (untraced: not a request); a data directory from before
# prices gets its prices here too.
SEEDS: tuple[Seed, ...] = (
    (
        "INSERT INTO stock (sku, available) VALUES (?, ?) ON CONFLICT DO NOTHING",
        tuple(SEED_STOCK.items()),
    ),
    (
        "INSERT INTO prices (sku, price) VALUES (?, ?) ON CONFLICT DO NOTHING",
        tuple(SEED_PRICES.items()),
    ),
)


class InventoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def stock(self, sku: str) -> tuple[int, Decimal] | None:
        """(units in stock, unit price), or None for a sku the catalogue does not sell."""
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT available, price FROM stock JOIN prices USING (sku) WHERE sku = ?", (sku,)
            ).fetchone()
        return None if row is None else (int(row["available"]), Decimal(row["price"]))

    def reserve(
        self, reservation_id: str, lines: Iterable[tuple[str, int]]
    ) -> tuple[str, list[ReservedLine]]:
        """Take every line or none, each priced from the catalogue; a repeated
        ``reservation_id`` returns the first outcome (at the current prices).

        Span events ``stock.checked`` (per line, with ``inventory.unit_price``) and
        ``stock.reserved`` land on the current span. A sku without a price is unknown.
        """
        span = trace.get_current_span()
        wanted: dict[str, int] = {}
        for sku, quantity in lines:
            wanted[sku] = wanted.get(sku, 0) + quantity
        with self.db.transaction() as cur:
            cur.lock(f"reservation {reservation_id}")
            existing = _reservation_lines(cur, reservation_id)
            if existing:
                rows = [(r["sku"], r["quantity"]) for r in existing]
                return existing[0]["status"], _priced(rows, _prices(cur, dict(rows)))
            prices: dict[str, Decimal] = {}
            for sku, quantity in sorted(wanted.items()):
                # The price is read by the statement that takes the stock: one statement a line.
                taken = cur.execute(
                    "UPDATE stock SET available = available - ? WHERE sku = ? AND available >= ?"
                    " RETURNING (SELECT price FROM prices WHERE prices.sku = stock.sku) AS price",
                    (quantity, sku, quantity),
                ).fetchone()
                if taken is None:
                    row = cur.execute(
                        "SELECT available FROM stock WHERE sku = ?", (sku,)
                    ).fetchone()
                    if row is None:
                        raise UnknownSku(sku)
                    raise InsufficientStock(sku, quantity, int(row["available"]))
                if taken["price"] is None:  # in stock, not for sale: rolled back
                    raise UnknownSku(sku)
                prices[sku] = Decimal(taken["price"])
                span.add_event(
                    "stock.checked",
                    {
                        "inventory.sku": sku,
                        "inventory.requested": quantity,
                        "inventory.unit_price": str(prices[sku]),
                    },
                )
            cur.executemany(
                "INSERT INTO reservations (reservation_id, sku, quantity) VALUES (?, ?, ?)",
                [(reservation_id, sku, q) for sku, q in wanted.items()],
            )
            check_deadline()  # the caller gave up: roll back rather than hold stock for no one
        span.add_event(
            "stock.reserved",
            {
                RESERVATION_ID_HASH: order_id_hash(reservation_id),
                "inventory.line_count": len(wanted),
            },
        )
        return "reserved", _priced(wanted.items(), prices)

    def release(self, reservation_id: str) -> tuple[str, list[tuple[str, int]]]:
        """Give the stock of a reservation back, once; releasing twice changes nothing."""
        with self.db.transaction() as cur:
            cur.lock(f"reservation {reservation_id}")
            rows = _reservation_lines(cur, reservation_id)
            if not rows:
                return "unknown", []
            if rows[0]["status"] == "reserved":
                cur.executemany(
                    "UPDATE stock SET available = available + ? WHERE sku = ?",
                    sorted(((r["quantity"], r["sku"]) for r in rows), key=lambda line: line[1]),
                )
                cur.execute(
                    "UPDATE reservations SET status = 'released' WHERE reservation_id = ?",
                    (reservation_id,),
                )
        trace.get_current_span().add_event(
            "stock.released", {RESERVATION_ID_HASH: order_id_hash(reservation_id)}
        )
        return "released", [(r["sku"], r["quantity"]) for r in rows]


def _prices(cur: Cursor, skus: Iterable[str]) -> dict[str, Decimal]:
    wanted = list(skus)
    marks = ",".join("?" * len(wanted))
    rows = cur.execute(f"SELECT sku, price FROM prices WHERE sku IN ({marks})", wanted)
    return {row["sku"]: Decimal(row["price"]) for row in rows.fetchall()}


def _priced(lines: Iterable[tuple[str, int]], prices: dict[str, Decimal]) -> list[ReservedLine]:
    return [(sku, quantity, prices[sku]) for sku, quantity in lines]


def _reservation_lines(cur: Cursor, reservation_id: str) -> list[Any]:
    """The reservation's lines (``sku``, ``quantity``, ``status``); none for an unknown id."""
    return cur.execute(
        "SELECT sku, quantity, status FROM reservations WHERE reservation_id = ? ORDER BY sku",
        (reservation_id,),
    ).fetchall()
