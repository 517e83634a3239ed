"""``Idempotency-Key`` for POST /api/orders: a lease, kept in the gateway's database.

The first request with a key claims it (state ``in_progress``) before any side effect, and the
claim is a lease: the row records

* ``order_id``: the saga's id, chosen at the claim; the reservation (inventory-service) and the
  order (order-service) are keyed by it, and both calls are idempotent under it;
* ``owner``: the gateway process running the saga (a random id per process, :data:`OWNER`);
* ``lease_expires_at``: Unix seconds after which the owner is presumed dead
  (``IDEMPOTENCY_LEASE_SECONDS``, never shorter than the saga's worst case).

A retry with the same body replays the stored 201 once the key is ``done``; a different body
under the same key is refused (422); a retry while the lease is live gets 409 with
``Retry-After`` (1 s when this process runs the saga; else the seconds to the deadline). A retry
after the deadline takes the lease over: it runs the saga again under the same order id, which
finds how far the dead owner got (an existing reservation and order are returned, not made
twice), completes it and answers with that order;
if the saga fails instead, it is compensated and the key freed, as for any failed order. A
reservation the dead owner had already released is never turned into an order: the take-over
cancels that order id and starts afresh under a new one (:func:`run_once`).

Owners known dead: a store that is one gateway process's own (SQLite, one file) has, at
start-up, every lease held by another owner orphaned. It is not taken over at once: a call the
dead owner sent just before it died may still be running, and a callee commits only within the
caller's budget (:mod:`servicekit.deadline`), so such a lease expires ``takeover_grace`` seconds
after start-up (the downstream timeout and its margins) unless it expires sooner. A store shared
by several gateways (PostgreSQL, ``Database.shared``) skips that, since other owners may be
alive: there each gateway process keeps a heartbeat row in ``idempotency_owners`` (renewed every
:data:`HEARTBEAT_SECONDS`, valid for ``takeover_grace`` plus two beats), and a lease whose owner's
heartbeat has run out is taken over as one past its deadline. An owner's heartbeat outlives it
by at least ``takeover_grace``, so a call it sent just before it died has had its time to commit.

The SQL is written once for both backends (:mod:`servicekit.storage`), each change in an
explicit transaction. The claim is ``INSERT ... ON CONFLICT DO NOTHING``: of concurrent first
requests, in one process or several, exactly one inserts; the others (on PostgreSQL they wait
for the inserting transaction to end) read the row it committed. Every lease decision after that
is a single conditional ``UPDATE`` (compare-and-set on owner and deadline), so two retries can
never both take one lease over.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from servicekit.problems import ProblemError
from servicekit.storage import UTC_NOW, Cursor, Database

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    response TEXT,
    order_id TEXT,
    owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    created_at TEXT NOT NULL DEFAULT {UTC_NOW}
);
CREATE TABLE IF NOT EXISTS idempotency_owners (
    owner TEXT PRIMARY KEY,
    alive_until DOUBLE PRECISION NOT NULL
);
"""
# Columns a data directory from before leases lacks (added at start-up: add_lease_columns).
LEASE_COLUMNS = {"order_id": "TEXT", "owner": "TEXT", "lease_expires_at": "DOUBLE PRECISION"}
# This process, as the owner of the leases it takes.
OWNER = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
# Seconds between two heartbeats of a gateway on a shared store.
HEARTBEAT_SECONDS = 1.0
# Heartbeat rows of owners gone this long (seconds) are deleted at start-up.
OWNER_ROW_RETENTION_SECONDS = 86_400.0


def add_lease_columns(cur: Cursor) -> None:
    """Migration: add the :data:`LEASE_COLUMNS` a table from before leases lacks (both backends:
    the columns present are read from an empty result's description)."""
    present = {column[0] for column in cur.execute(LEASE_PROBE).description}
    for column, kind in LEASE_COLUMNS.items():
        if column not in present:  # names and types from the constant above, never from input
            cur.execute(f"ALTER TABLE idempotency_keys ADD COLUMN {column} {kind}")


LEASE_PROBE = "SELECT * FROM idempotency_keys WHERE 1 = 0"


def request_fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class Claim:
    """``replay`` is the stored response when the key already completed; otherwise this process
    holds the lease for ``order_id`` (``taken_over``: from a dead owner)."""

    replay: dict[str, Any] | None = None
    order_id: str = ""
    taken_over: bool = False


class IdempotencyStore:
    def __init__(
        self,
        db: Database,
        lease_seconds: float,
        takeover_grace: float,
        owner: str = OWNER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.owner = owner
        self.clock = clock
        # A shared store: how long a heartbeat vouches for its owner.
        self.heartbeat_ttl = takeover_grace + 2 * HEARTBEAT_SECONDS
        self.orphaned = 0 if db.shared else self._adopt_orphans(takeover_grace)
        if db.shared:
            self.heartbeat()
            with db.transaction(traced=False) as cur:
                cur.execute(
                    "DELETE FROM idempotency_owners WHERE alive_until < ?",
                    (self.clock() - OWNER_ROW_RETENTION_SECONDS,),
                )

    @property
    def _take_over(self) -> str:
        """The compare-and-set UPDATE of a take-over; on a shared store an owner without a
        live heartbeat counts as past its deadline."""
        dead_owner = (
            " OR NOT EXISTS (SELECT 1 FROM idempotency_owners o"
            " WHERE o.owner = idempotency_keys.owner AND o.alive_until > ?)"
            if self.db.shared
            else ""
        )
        return (
            "UPDATE idempotency_keys SET owner = ?, lease_expires_at = ?,"
            " order_id = COALESCE(order_id, ?) WHERE key = ? AND state = 'in_progress'"
            f" AND (lease_expires_at IS NULL OR lease_expires_at <= ?{dead_owner})"
        )

    def heartbeat(self) -> None:
        """This process is alive for :attr:`heartbeat_ttl` more seconds (untraced: no request's
        step). Called every :data:`HEARTBEAT_SECONDS` on a shared store."""
        with self.db.transaction(traced=False) as cur:
            cur.execute(
                "INSERT INTO idempotency_owners (owner, alive_until) VALUES (?, ?)"
                " ON CONFLICT (owner) DO UPDATE SET alive_until = excluded.alive_until",
                (self.owner, self.clock() + self.heartbeat_ttl),
            )

    def _adopt_orphans(self, grace: float) -> int:
        """Leases of earlier processes expire within ``grace`` seconds; how many there were."""
        expires = self.clock() + grace
        with self.db.transaction(traced=False) as cur:  # start-up, not a request
            return cur.execute(
                "UPDATE idempotency_keys SET lease_expires_at = ? WHERE state = 'in_progress'"
                " AND (owner IS NULL OR owner <> ?)"
                " AND (lease_expires_at IS NULL OR lease_expires_at > ?)",
                (expires, self.owner, expires),
            ).rowcount

    def claim(self, key: str, fingerprint: str, order_id: str) -> Claim:
        """Claim ``key`` for a new saga under ``order_id``, replay it, or take its lease over."""
        now = self.clock()
        expires = now + self.lease_seconds
        with self.db.transaction() as cur:
            claimed = cur.execute(
                "INSERT INTO idempotency_keys"
                " (key, request_hash, state, order_id, owner, lease_expires_at)"
                " VALUES (?, ?, 'in_progress', ?, ?, ?) ON CONFLICT DO NOTHING",
                (key, fingerprint, order_id, self.owner, expires),
            ).rowcount
            if claimed == 1:
                return Claim(order_id=order_id)
            row = cur.execute(
                "SELECT request_hash, state, response, order_id, k.owner AS owner,"
                " lease_expires_at, alive_until FROM idempotency_keys k"
                " LEFT JOIN idempotency_owners o ON o.owner = k.owner WHERE key = ?",
                (key,),
            ).fetchone()
            if row is None:  # freed by its failed saga in between: the client retries
                raise _in_progress(1)
            if row["request_hash"] != fingerprint:
                raise ProblemError(
                    422,
                    "Idempotency-Key reused",
                    "This Idempotency-Key was used with a different request body.",
                )
            if row["state"] == "done":
                return Claim(replay=json.loads(row["response"]))
            deadline = row["lease_expires_at"]
            if self.db.shared and row["owner"] != self.owner:
                # The owner's heartbeat ends its lease too (none: it is gone).
                deadline = min(deadline or now, row["alive_until"] or now)
            # Compare-and-set: of concurrent retries after the deadline, one takes the lease.
            values = (self.owner, expires, order_id, key, now) + ((now,) if self.db.shared else ())
            taken = (deadline is None or deadline <= now) and cur.execute(
                self._take_over, values
            ).rowcount == 1
        if not taken:
            # This process runs it: usually done within a second. Another: it may be dead,
            # its lease is what is left.
            left = 1 if row["owner"] == self.owner else (deadline or now) - now
            raise _in_progress(max(1, math.ceil(left)))
        return Claim(order_id=row["order_id"] or order_id, taken_over=True)

    def restart(self, key: str, order_id: str) -> None:
        """The lease's saga starts afresh under a new ``order_id`` (a fresh deadline too)."""
        self._held(
            "UPDATE idempotency_keys SET order_id = ?, lease_expires_at = ?",
            key,
            (order_id, self.clock() + self.lease_seconds),
        )

    def complete(self, key: str, response: dict[str, Any]) -> None:
        self._held(
            "UPDATE idempotency_keys SET state = 'done', response = ?, owner = NULL,"
            " lease_expires_at = NULL",
            key,
            (json.dumps(response),),
        )

    def abandon(self, key: str) -> None:
        """Free the key of a failed (and compensated) saga, so the client can retry it."""
        with self.db.transaction() as cur:
            cur.execute(
                "DELETE FROM idempotency_keys"
                " WHERE key = ? AND owner = ? AND state = 'in_progress'",
                (key, self.owner),
            )

    def _held(self, update: str, key: str, values: tuple[Any, ...]) -> None:
        """``update`` the row while this process still owns its lease; a lease taken over by
        another process meanwhile (this one outlived its deadline) is left to that one."""
        with self.db.transaction() as cur:
            cur.execute(
                f"{update} WHERE key = ? AND owner = ? AND state = 'in_progress'",
                (*values, key, self.owner),
            )

    def state(self, key: str) -> dict[str, Any] | None:
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT state, order_id, owner, lease_expires_at FROM idempotency_keys"
                " WHERE key = ?",
                (key,),
            ).fetchone()
        return None if row is None else dict(row)


def _in_progress(retry_after: int) -> ProblemError:
    """409 with ``Retry-After`` (seconds): the key's first request is still being processed."""
    return ProblemError(
        409,
        "Request in progress",
        "A request with this Idempotency-Key is in progress.",
        headers={"Retry-After": str(retry_after)},
    )


class ReservationReleased(Exception):
    """The order id's reservation was released: it can no longer become an order."""


async def run_once(
    store: IdempotencyStore,
    key: str,
    fingerprint: str,
    new_order_id: Callable[[], str],
    place: Callable[[str], Awaitable[Any]],
    cancel: Callable[[str], Awaitable[Any]],
) -> tuple[Any, bool]:
    """Run ``place(order_id)`` at most once per ``key``: ``(result, replayed)``.

    ``place`` raises :class:`ReservationReleased` when the order id's stock was given back (a
    saga a dead owner failed and compensated): the take-over then ``cancel``s that order id, in
    case it was stored, and starts again under a new one.
    """
    claim = await store.db.call(store.claim, key, fingerprint, new_order_id())
    if claim.replay is not None:
        return claim.replay, True
    span = trace.get_current_span()
    if claim.taken_over:
        span.add_event("idempotency.lease_taken_over")
    order_id = claim.order_id
    try:
        try:
            result = await place(order_id)
        except ReservationReleased:
            await cancel(order_id)
            order_id = new_order_id()
            await store.db.call(store.restart, key, order_id)
            span.add_event("idempotency.saga_restarted")
            result = await place(order_id)
    except BaseException:
        await store.db.call(store.abandon, key)
        raise
    await store.db.call(store.complete, key, result.model_dump(mode="json"))
    return result, False
