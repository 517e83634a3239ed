"""Reservations to release that inventory-service could not be told about yet.

A reservation whose outcome is unknown (inventory-service timed out, or its connection broke
after the request was sent: it may have committed) or whose release failed is written here, in
the gateway's own SQLite file, so a crash or an inventory outage does not leak its stock. Each
new order first retries what is pending; release is idempotent and an unknown reservation id
releases nothing, so a retry is always safe.
"""

from __future__ import annotations

from servicekit.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_releases (
    reservation_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""


class PendingReleases:
    def __init__(self, db: Database) -> None:
        self.db = db
        # A cheap "anything to do?" for every order, without a query when nothing is pending.
        self.count = self._count()

    def add(self, reservation_id: str) -> None:
        with self.db.transaction() as conn:
            conn.cursor().execute(
                "INSERT OR IGNORE INTO pending_releases (reservation_id) VALUES (?)",
                (reservation_id,),
            )
        self.count = self._count()

    def remove(self, reservation_id: str) -> None:
        with self.db.transaction() as conn:
            conn.cursor().execute(
                "DELETE FROM pending_releases WHERE reservation_id = ?", (reservation_id,)
            )
        self.count = self._count()

    def _count(self) -> int:
        return self.db.connection().execute("SELECT COUNT(*) FROM pending_releases").fetchone()[0]

    def ids(self, limit: int = -1) -> list[str]:
        """The oldest first; ``limit`` bounds what one order retries after a long outage."""
        rows = self.db.connection().execute(
            "SELECT reservation_id FROM pending_releases ORDER BY created_at LIMIT ?", (limit,)
        )
        return [row["reservation_id"] for row in rows]
