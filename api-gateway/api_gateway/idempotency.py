"""``Idempotency-Key`` for POST /api/orders, kept in the gateway's own SQLite file.

The first request with a key claims it (state ``in_progress``) before any side effect; a retry
with the same body replays the stored 201; a different body under the same key is refused (422);
a retry while the first is still running gets 409. A failed order frees its key, so the client
can retry it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from servicekit.db import Database
from servicekit.problems import ProblemError

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    response TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""


def request_fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class Claim:
    """``replay`` is the stored response when the key already completed."""

    replay: dict[str, Any] | None = None


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, key: str, fingerprint: str) -> Claim:
        with self.db.transaction() as conn:
            cur = conn.cursor()
            row = cur.execute(
                "SELECT request_hash, state, response FROM idempotency_keys WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                cur.execute(
                    "INSERT INTO idempotency_keys (key, request_hash, state)"
                    " VALUES (?, ?, 'in_progress')",
                    (key, fingerprint),
                )
                return Claim()
        if row["request_hash"] != fingerprint:
            raise ProblemError(
                422,
                "Idempotency-Key reused",
                "This Idempotency-Key was used with a different request body.",
            )
        if row["state"] != "done":
            raise ProblemError(
                409, "Request in progress", "A request with this Idempotency-Key is in progress."
            )
        return Claim(replay=json.loads(row["response"]))

    def complete(self, key: str, response: dict[str, Any]) -> None:
        with self.db.transaction() as conn:
            conn.cursor().execute(
                "UPDATE idempotency_keys SET state = 'done', response = ? WHERE key = ?",
                (json.dumps(response), key),
            )

    def abandon(self, key: str) -> None:
        with self.db.transaction() as conn:
            conn.cursor().execute("DELETE FROM idempotency_keys WHERE key = ?", (key,))
