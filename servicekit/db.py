"""SQLite per service (stdlib ``sqlite3``), in WAL mode, with every statement traced.

One connection per thread: FastAPI runs sync endpoints in a thread pool and a sqlite3 connection
must not be shared across threads. Transactions are explicit ``BEGIN IMMEDIATE`` so that writers
queue on SQLite's lock up front instead of failing halfway with ``database is locked``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from opentelemetry import trace
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

BUSY_TIMEOUT_MS = 10_000


class Database:
    """A SQLite file with a schema, handing out traced per-thread connections."""

    def __init__(self, path: Path, schema: str, tracer_provider: trace.TracerProvider) -> None:
        self.path = path
        self._provider = tracer_provider
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = self._open_raw()
        raw.executescript(schema)
        raw.close()

    def _open_raw(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            raw = self._open_raw()
            with self._lock:
                self._all.append(raw)
            conn = SQLite3Instrumentor.instrument_connection(raw, tracer_provider=self._provider)
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def ping(self) -> None:
        """Readiness: the file is there and answers a query (untraced: probes are not traffic)."""
        conn = sqlite3.connect(self.path, timeout=1)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
