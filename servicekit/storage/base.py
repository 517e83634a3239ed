"""What both backends share: the :class:`Database` API the stores use and the traced cursor.

Every statement a store runs through a :class:`Cursor` gets one CLIENT span named
``{db.operation.name} {db.collection.name}`` (``SELECT reservations``), as the database semantic
conventions ask, with ``db.system.name``, ``db.namespace``, ``db.query.text`` (the statement
with its placeholders: never a value), ``server.address``/``server.port`` where there is a
server, and on failure ``error.type`` and ``db.response.status_code`` (SQLite's extended result
code, PostgreSQL's SQLSTATE). Schema set-up, seeds, migrations and readiness probes run on an
untraced cursor: they are not traffic.

The stores' SQL is written once, with ``?`` placeholders; a backend whose driver wants another
style (psycopg: ``%s``) translates it here. DDL that must differ uses :data:`UTC_NOW` for the
``created_at`` default, replaced by each backend's expression.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from opentelemetry import trace
from starlette.concurrency import run_in_threadpool

from servicekit.semconv import summarize_sql

# The instrumentation scope of the statements' spans, whichever the backend.
TRACER_NAME = "servicekit.storage"
# Connections one process's PostgreSQL pool holds at most (DATABASE_POOL_SIZE).
DEFAULT_POOL_SIZE = 8
# In DDL: the current UTC time as ISO 8601 text with milliseconds (``2026-01-31T12:00:00.123Z``).
UTC_NOW = "__utc_now__"
# A seed: one statement (``INSERT ... ON CONFLICT DO NOTHING``) and the rows it inserts.
Seed = tuple[str, Sequence[tuple[Any, ...]]]
# A migration: run on an untraced cursor inside the schema transaction.
Migration = Callable[["Cursor"], None]
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class StatementTracing:
    """How one database's statements are traced: the tracer and the attributes every span has."""

    tracer: trace.Tracer
    system: str  # db.system.name: sqlite, postgresql
    attributes: dict[str, Any] = field(default_factory=dict)  # db.namespace, server.*
    error_code: Callable[[BaseException], str | None] = lambda exc: None

    # Per statement text (the stores' SQL is a fixed set): its span name and attributes.
    _prepared: dict[str, tuple[str, dict[str, Any]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def _prepare(self, statement: str) -> tuple[str, dict[str, Any]]:
        found = self._prepared.get(statement)
        if found is None:
            summary = summarize_sql(statement)
            attributes = {"db.system.name": self.system, **self.attributes}
            attributes["db.query.text"] = statement
            if summary.operation:
                attributes["db.operation.name"] = summary.operation
            if summary.collection:
                attributes["db.collection.name"] = summary.collection
            found = self._prepared[statement] = (summary.span_name(self.system), attributes)
        return found

    @contextmanager
    def statement_span(self, statement: str) -> Iterator[None]:
        """One CLIENT span around a statement; ERROR with ``error.type`` when it raises. With
        the SDK disabled (a no-op tracer) nothing is prepared or started."""
        if isinstance(self.tracer, trace.NoOpTracer):
            yield
            return
        name, attributes = self._prepare(statement)
        with self.tracer.start_as_current_span(
            name, kind=trace.SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                yield
            except Exception as exc:  # recorded and set ERROR by start_as_current_span
                span.set_attribute("error.type", f"{type(exc).__module__}.{type(exc).__name__}")
                code = self.error_code(exc)
                if code is not None:
                    span.set_attribute("db.response.status_code", code)
                raise


class Cursor:
    """A driver cursor behind one API: ``execute``/``executemany`` take ``?`` placeholders and
    return the cursor; rows read by column name (``row["sku"]``). Traced when ``tracing`` is
    given."""

    def __init__(
        self,
        raw: Any,
        translate: Callable[[str], str],
        tracing: StatementTracing | None = None,
        lock_statement: str | None = None,
    ) -> None:
        self._raw = raw
        self._translate = translate
        self._tracing = tracing
        self._lock_statement = lock_statement

    def _span(self, statement: str) -> AbstractContextManager[None]:
        return self._tracing.statement_span(statement) if self._tracing else _untraced()

    def execute(self, statement: str, parameters: Sequence[Any] = ()) -> Cursor:
        with self._span(statement):
            self._raw.execute(self._translate(statement), parameters)
        return self

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        with self._span(statement):
            self._raw.executemany(self._translate(statement), list(rows))
        return self

    def lock(self, key: str) -> None:
        """Serialise this transaction with every other one that locks ``key``, in any process,
        until it ends (untraced). A no-op where transactions are serialised already (SQLite's
        ``BEGIN IMMEDIATE``)."""
        if self._lock_statement is not None:
            self._raw.execute(self._lock_statement, (key,))

    def fetchone(self) -> Any:
        return self._raw.fetchone()

    def fetchall(self) -> list[Any]:
        return self._raw.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._raw)

    @property
    def rowcount(self) -> int:
        return int(self._raw.rowcount)

    @property
    def description(self) -> Any:
        return self._raw.description


@contextmanager
def _untraced() -> Iterator[None]:
    yield


class Database:
    """One service's store. ``transaction()`` and ``read()`` hand out a :class:`Cursor`; safe
    to use from several threads at once (FastAPI runs sync endpoints in a thread pool).

    ``shared``: other processes write the same data (PostgreSQL), so nothing read once may be
    cached as if this process were the only writer.
    """

    system: str
    namespace: str
    shared: bool
    inline: bool = False  # call() runs store methods on the event loop's own thread

    async def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``, a store method that uses this database, from async code.

        SQLite (``inline``) runs it on the event loop: a statement on a local file takes tens
        of microseconds, less than a hop to the thread pool and back (anyio's limiter, cancel
        scopes and two thread wake-ups, and a GIL hand-off each way under load). PostgreSQL
        runs it in FastAPI's thread pool: a round trip to the server would stall the loop.
        """
        if self.inline:
            return fn(*args, **kwargs)
        return await run_in_threadpool(fn, *args, **kwargs)

    def transaction(self, traced: bool = True) -> AbstractContextManager[Cursor]:
        """One transaction: committed when the block ends, rolled back on any exception;
        ``traced=False`` for start-up work that is no step of a request."""
        raise NotImplementedError

    def read(self, traced: bool = True) -> AbstractContextManager[Cursor]:
        """A cursor for reads outside a transaction (each statement sees committed data);
        ``traced=False`` for a probe that is no step of a request."""
        raise NotImplementedError

    def ping(self) -> None:
        """Readiness: the store answers a query (untraced: probes are not traffic). Raises
        when it does not."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
