"""Compensations the gateway could not deliver yet, kept durably in its database.

* Releases: a reservation whose outcome is unknown (inventory-service timed out, or its
  connection broke after the request was sent: it may have committed) or whose release failed.
* Cancellations: an order whose creation the gateway reported as failed because order-service's
  connection broke after the request went out: it may have been stored.

Each new order first retries what is pending, and the gateway sweeps the backlogs every
``COMPENSATION_RETRY_SECONDS`` (:meth:`api_gateway.orders.OrderFlow.sweep`), so a crash or an
outage of a service leaks no stock and leaves no order the client was told failed, even when no
order follows. Both operations are idempotent (an unknown id changes nothing), so a retry is
always safe, and so are two gateways retrying one entry of a shared store at once.
"""

from __future__ import annotations

from servicekit.storage import UTC_NOW, Database

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS pending_releases (
    reservation_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT {UTC_NOW}
);
CREATE TABLE IF NOT EXISTS pending_cancellations (
    order_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT {UTC_NOW}
);
"""


class CompensationBacklog:
    """Ids whose compensation (one kind: a release or a cancellation) is not delivered yet,
    kept in ``table`` above, keyed by ``column``, until a retry succeeds.

    ``table`` and ``column`` are this module's constants (:func:`release_backlog`,
    :func:`cancellation_backlog`), never input: they are the only names written into the SQL.
    """

    def __init__(self, db: Database, table: str, column: str) -> None:
        self.db = db
        self.table = table
        self.column = column
        # A cheap "anything to do?" for every order, without a query when nothing is pending:
        # only where this process is the store's only writer.
        self._count = self._query_count()

    @property
    def count(self) -> int:
        """Entries pending; read from the store when it is shared (other gateways add and
        remove entries), else this process's own tally."""
        return self._query_count() if self.db.shared else self._count

    def add(self, item_id: str) -> None:
        with self.db.transaction() as cur:
            cur.execute(
                f"INSERT INTO {self.table} ({self.column}) VALUES (?) ON CONFLICT DO NOTHING",
                (item_id,),
            )
        self._count = self._query_count()

    def remove(self, item_id: str) -> None:
        with self.db.transaction() as cur:
            cur.execute(f"DELETE FROM {self.table} WHERE {self.column} = ?", (item_id,))
        self._count = self._query_count()

    def _query_count(self) -> int:
        with self.db.read(traced=False) as cur:  # a probe per order, not a step of it
            return int(cur.execute(f"SELECT COUNT(*) AS n FROM {self.table}").fetchone()["n"])

    def ids(self, limit: int | None = None) -> list[str]:
        """The oldest first; ``limit`` bounds what one order retries after a long outage."""
        statement = f"SELECT {self.column} FROM {self.table} ORDER BY created_at"
        # Untraced like the count: an order that retries earlier compensations reads the
        # backlog, but the read is no step of that order (each retry has a trace of its own).
        with self.db.read(traced=False) as cur:
            if limit is None:
                rows = cur.execute(statement).fetchall()
            else:
                rows = cur.execute(f"{statement} LIMIT ?", (limit,)).fetchall()
        return [row[self.column] for row in rows]


def release_backlog(db: Database) -> CompensationBacklog:
    return CompensationBacklog(db, "pending_releases", "reservation_id")


def cancellation_backlog(db: Database) -> CompensationBacklog:
    return CompensationBacklog(db, "pending_cancellations", "order_id")
