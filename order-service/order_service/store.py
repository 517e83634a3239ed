"""Orders (:mod:`servicekit.storage`): the order row and its lines, one transaction or nothing."""

from __future__ import annotations

import json
from decimal import Decimal

from order_service.models import CreateOrder, Order, OrderLine
from servicekit.deadline import check_deadline
from servicekit.money import to_cents
from servicekit.storage import UTC_NOW, Database

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    reservation_id TEXT NOT NULL,
    status TEXT NOT NULL,
    total TEXT NOT NULL,
    items TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT {UTC_NOW}
);
"""


def order_total(lines: list[OrderLine]) -> Decimal:
    """Sum in decimal cents: float arithmetic would make 3 x 0.1 = 0.30000000000000004."""
    return to_cents(sum((line.price * line.quantity for line in lines), Decimal(0)))


class OrderStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, body: CreateOrder, total: Decimal) -> tuple[Order, bool]:
        """Insert the order; a repeated ``orderId`` returns the stored one, ``created=False``."""
        items = json.dumps([line.model_dump(mode="json") for line in body.items])
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO orders (order_id, user_id, reservation_id, status, total, items)"
                " VALUES (?, ?, ?, 'confirmed', ?, ?) ON CONFLICT DO NOTHING",
                (body.orderId, body.userId, body.reservationId, str(total), items),
            )
            created = cur.rowcount == 1
            check_deadline()  # the gateway gave up: roll back rather than store a lost order
        order = self.get(body.orderId)
        assert order is not None
        return order, created

    def delete(self, order_id: str) -> bool:
        """Compensation: remove an order the caller was told failed. Idempotent."""
        with self.db.transaction() as cur:
            return cur.execute("DELETE FROM orders WHERE order_id = ?", (order_id,)).rowcount == 1

    def get(self, order_id: str) -> Order | None:
        with self.db.read() as cur:
            row = cur.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        if row is None:
            return None
        return Order(
            orderId=row["order_id"],
            userId=row["user_id"],
            reservationId=row["reservation_id"],
            status=row["status"],
            total=Decimal(row["total"]),
            items=[OrderLine(**item) for item in json.loads(row["items"], parse_float=Decimal)],
            createdAt=row["created_at"],
        )
