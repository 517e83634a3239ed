"""SQLite per service (stdlib ``sqlite3``), a file under ``DATA_DIR``, in WAL mode: the embedded
default, for one process of each service.

One connection per thread: the services' routes run their statements on the event loop's thread
(:meth:`Database.call`, ``inline``), other work may run them in a thread pool, and a sqlite3
connection must not be shared across threads. Transactions are explicit ``BEGIN IMMEDIATE`` so
that writers queue on SQLite's lock up front instead of failing halfway with ``database is
locked``; that lock also serialises every writer, so :meth:`Cursor.lock` has nothing to add.

Statements are traced by :class:`servicekit.storage.base.Cursor`: the contrib sqlite3
instrumentation names a span by the statement's first word alone and has no hook to rename it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from opentelemetry import trace

from servicekit.storage.base import (
    TRACER_NAME,
    UTC_NOW,
    Cursor,
    Database,
    Migration,
    Seed,
    StatementTracing,
)

BUSY_TIMEOUT_MS = 10_000
DB_SYSTEM = "sqlite"
UTC_NOW_SQL = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"


def _same(statement: str) -> str:
    return statement


def _error_code(exc: BaseException) -> str | None:
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    return None if code is None else str(code)


class SqliteDatabase(Database):
    """A SQLite file with a schema, handing out traced per-thread connections."""

    system = DB_SYSTEM
    shared = False
    inline = True  # one process per file: only this process's own threads could hold a lock

    def __init__(
        self,
        path: Path,
        script: str,
        tracer_provider: trace.TracerProvider,
        seeds: Sequence[Seed] = (),
        migrations: Sequence[Migration] = (),
    ) -> None:
        self.path = path
        self.namespace = path.name  # db.namespace: the database file's name
        self._tracing = StatementTracing(
            tracer_provider.get_tracer(TRACER_NAME),
            DB_SYSTEM,
            {"db.namespace": self.namespace},
            _error_code,
        )
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = self._open_raw()
        try:
            raw.executescript(script.replace(UTC_NOW, UTC_NOW_SQL))
            raw.execute("BEGIN IMMEDIATE")
            cur = Cursor(raw.cursor(), _same)
            for statement, rows in seeds:
                cur.executemany(statement, rows)
            for migrate in migrations:
                migrate(cur)
            raw.execute("COMMIT")
        finally:
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

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open_raw()
            with self._lock:
                self._all.append(conn)
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, traced: bool = True) -> Iterator[Cursor]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield Cursor(conn.cursor(), _same, self._tracing if traced else None)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def read(self, traced: bool = True) -> Iterator[Cursor]:
        yield Cursor(self._connection().cursor(), _same, self._tracing if traced else None)

    def ping(self) -> None:
        """The file is there and answers a query."""
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
