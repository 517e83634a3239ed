"""Compensations the gateway could not deliver yet, kept in its own SQLite file.

* Releases: a reservation whose outcome is unknown (inventory-service timed out, or its
  connection broke after the request was sent: it may have committed) or whose release failed.
* Cancellations: an order whose creation the gateway reported as failed because order-service's
  connection broke after the request went out: it may have been stored.

Each new order first retries what is pending, so a crash or an outage of a service leaks no
stock and leaves no order the client was told failed. Both operations are idempotent (an
unknown id changes nothing), so a retry is always safe.
"""

from __future__ import annotations

from servicekit.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_releases (
    reservation_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS pending_cancellations (
    order_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""


class CompensationBacklog:
    """Ids whose compensation (one kind: a release or a cancellation) is not delivered yet,
    kept in ``table`` above, keyed by ``column``, until a retry succeeds."""

    def __init__(self, db: Database, table: str, column: str) -> None:
        self.db = db
        self.table = table
        self.column = column
        # A cheap "anything to do?" for every order, without a query when nothing is pending.
        self.count = self._count()

    def add(self, item_id: str) -> None:
        with self.db.transaction() as conn:
            conn.cursor().execute(
                f"INSERT OR IGNORE INTO {self.table} ({self.column}) VALUES (?)", (item_id,)
            )
        self.count = self._count()

    def remove(self, item_id: str) -> None:
        with self.db.transaction() as conn:
            conn.cursor().execute(f"DELETE FROM {self.table} WHERE {self.column} = ?", (item_id,))
        self.count = self._count()

    def _count(self) -> int:
        return self.db.connection().execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]

    def ids(self, limit: int = -1) -> list[str]:
        """The oldest first; ``limit`` bounds what one order retries after a long outage."""
        rows = self.db.connection().execute(
            f"SELECT {self.column} FROM {self.table} ORDER BY created_at LIMIT ?", (limit,)
        )
        return [row[self.column] for row in rows]


def release_backlog(db: Database) -> CompensationBacklog:
    return CompensationBacklog(db, "pending_releases", "reservation_id")


def cancellation_backlog(db: Database) -> CompensationBacklog:
    return CompensationBacklog(db, "pending_cancellations", "order_id")
