"""Stock and reservations in SQLite.

A reservation is one ``BEGIN IMMEDIATE`` transaction with one conditional ``UPDATE`` per line
(``... WHERE available >= quantity``): either every line is taken or the whole transaction rolls
back, and stock can never go negative whatever the concurrency, because SQLite serialises writers.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import trace

from servicekit.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    sku TEXT PRIMARY KEY,
    available INTEGER NOT NULL CHECK (available >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'reserved',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (reservation_id, sku)
);
"""

# The seeded catalogue. SKU123 and OUT-OF-STOCK are the ones the README's examples use.
SEED_STOCK = {
    "SKU123": 1_000_000,
    "SKU456": 10_000,
    "SKU789": 500,
    "LIMITED-EDITION": 5,
    "OUT-OF-STOCK": 0,
}


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


# Part of the schema script, so seeding is not traced as if it were a request.
SCHEMA += "".join(
    f"INSERT OR IGNORE INTO stock (sku, available) VALUES ('{sku}', {qty});\n"
    for sku, qty in SEED_STOCK.items()
)


class InventoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def available(self, sku: str) -> int | None:
        row = (
            self.db.connection()
            .cursor()
            .execute("SELECT available FROM stock WHERE sku = ?", (sku,))
            .fetchone()
        )
        return None if row is None else int(row["available"])

    def reserve(self, reservation_id: str, lines: Iterable[tuple[str, int]]) -> tuple[str, list]:
        """Take every line or none; a repeated ``reservation_id`` returns the first outcome.

        Span events ``stock.checked`` (per line) and ``stock.reserved`` land on the current span.
        """
        span = trace.get_current_span()
        wanted: dict[str, int] = {}
        for sku, quantity in lines:
            wanted[sku] = wanted.get(sku, 0) + quantity
        with self.db.transaction() as conn:
            cur = conn.cursor()
            existing = cur.execute(
                "SELECT sku, quantity, status FROM reservations WHERE reservation_id = ?",
                (reservation_id,),
            ).fetchall()
            if existing:
                return existing[0]["status"], [(r["sku"], r["quantity"]) for r in existing]
            for sku, quantity in wanted.items():
                cur.execute(
                    "UPDATE stock SET available = available - ? WHERE sku = ? AND available >= ?",
                    (quantity, sku, quantity),
                )
                if cur.rowcount == 0:
                    row = cur.execute(
                        "SELECT available FROM stock WHERE sku = ?", (sku,)
                    ).fetchone()
                    if row is None:
                        raise UnknownSku(sku)
                    raise InsufficientStock(sku, quantity, int(row["available"]))
                span.add_event(
                    "stock.checked", {"inventory.sku": sku, "inventory.requested": quantity}
                )
            cur.executemany(
                "INSERT INTO reservations (reservation_id, sku, quantity) VALUES (?, ?, ?)",
                [(reservation_id, sku, q) for sku, q in wanted.items()],
            )
        span.add_event(
            "stock.reserved",
            {"inventory.reservation_id": reservation_id, "inventory.line_count": len(wanted)},
        )
        return "reserved", list(wanted.items())

    def release(self, reservation_id: str) -> tuple[str, list]:
        """Give the stock of a reservation back, once; releasing twice changes nothing."""
        with self.db.transaction() as conn:
            cur = conn.cursor()
            rows = cur.execute(
                "SELECT sku, quantity, status FROM reservations WHERE reservation_id = ?",
                (reservation_id,),
            ).fetchall()
            if not rows:
                return "unknown", []
            if rows[0]["status"] == "reserved":
                cur.executemany(
                    "UPDATE stock SET available = available + ? WHERE sku = ?",
                    [(r["quantity"], r["sku"]) for r in rows],
                )
                cur.execute(
                    "UPDATE reservations SET status = 'released' WHERE reservation_id = ?",
                    (reservation_id,),
                )
        trace.get_current_span().add_event(
            "stock.released", {"inventory.reservation_id": reservation_id}
        )
        return "released", [(r["sku"], r["quantity"]) for r in rows]
