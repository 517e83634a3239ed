"""SQLite per service (stdlib ``sqlite3``), in WAL mode, with every statement traced.

One connection per thread: FastAPI runs sync endpoints in a thread pool and a sqlite3 connection
must not be shared across threads. Transactions are explicit ``BEGIN IMMEDIATE`` so that writers
queue on SQLite's lock up front instead of failing halfway with ``database is locked``.

Statements run through a cursor (``conn.cursor().execute(...)``, ``executemany``) get a CLIENT
span named ``{db.operation.name} {db.collection.name}`` (``SELECT reservations``), as the
database semantic conventions ask. The contrib sqlite3 instrumentation names a span by the
statement's first word alone and has no hook to rename it, so the statements are traced here.
``Connection.execute`` does not go through ``cursor()``: transaction control (``BEGIN``,
``COMMIT``, ``ROLLBACK``) and ``PRAGMA`` stay untraced.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import trace

from servicekit.semconv import summarize_sql

BUSY_TIMEOUT_MS = 10_000
DB_SYSTEM = "sqlite"


class TracedConnection(sqlite3.Connection):
    """A connection whose cursors trace their statements with ``tracer``."""

    tracer: trace.Tracer = trace.NoOpTracer()
    namespace = ""  # db.namespace: the database file's name

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:
        return super().cursor(factory or TracedCursor)

    @contextmanager
    def statement_span(self, statement: str) -> Iterator[None]:
        """One CLIENT span around a statement; ERROR with ``error.type`` when it raises."""
        summary = summarize_sql(statement)
        attributes = {
            "db.system.name": DB_SYSTEM,
            "db.namespace": self.namespace,
            "db.query.text": statement,
        }
        if summary.operation:
            attributes["db.operation.name"] = summary.operation
        if summary.collection:
            attributes["db.collection.name"] = summary.collection
        with self.tracer.start_as_current_span(
            summary.span_name(DB_SYSTEM), kind=trace.SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                yield
            except Exception as exc:  # recorded and set ERROR by start_as_current_span
                span.set_attribute("error.type", f"{type(exc).__module__}.{type(exc).__name__}")
                if isinstance(exc, sqlite3.Error) and exc.sqlite_errorcode is not None:
                    span.set_attribute("db.response.status_code", str(exc.sqlite_errorcode))
                raise


class TracedCursor(sqlite3.Cursor):
    """The cursor :class:`TracedConnection` hands out: one span per ``execute``/``executemany``."""

    connection: TracedConnection

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        with self.connection.statement_span(sql):
            return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> sqlite3.Cursor:
        with self.connection.statement_span(sql):
            return super().executemany(sql, seq_of_parameters)


class Database:
    """A SQLite file with a schema, handing out traced per-thread connections."""

    def __init__(self, path: Path, schema: str, tracer_provider: trace.TracerProvider) -> None:
        self.path = path
        self._tracer = tracer_provider.get_tracer(__name__)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = self._open_raw()
        raw.executescript(schema)
        raw.close()

    def _open_raw(self) -> TracedConnection:
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
            factory=TracedConnection,
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open_raw()
            conn.tracer = self._tracer
            conn.namespace = self.path.name
            with self._lock:
                self._all.append(conn)
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
