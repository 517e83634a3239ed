"""PostgreSQL, shared by every process of every service (psycopg 3), one schema per service.

``DATABASE_URL=postgresql://user:password@host:port/database``. Each service keeps its tables in
its own schema, named after its package (``inventory_service``), set as the ``search_path`` of
every pooled connection, so the stores' SQL names bare tables as on SQLite.

The sync API with a :class:`psycopg_pool.ConnectionPool` (``DATABASE_POOL_SIZE`` connections at
most per process): the stores run in FastAPI's thread pool, as they do with sqlite3, so a
blocking driver keeps one code path for both backends; a thread waits for a free connection.
Connections are in autocommit mode: :meth:`transaction` opens a real transaction (READ
COMMITTED), :meth:`read` runs each statement on its own.

Start-up is safe when several replicas start at once: ``CREATE SCHEMA IF NOT EXISTS``, the
schema script, the seeds and the migrations run in one transaction holding
``pg_advisory_xact_lock`` on the schema's name, so one process creates and the others wait,
then find everything there.

Tracing: ``opentelemetry-instrumentation-psycopg`` (contrib) is not used. It wraps psycopg's
cursors through the generic DB-API instrumentation, which names a span by the statement's first
word alone (``SELECT``) with no hook to rename it, and sets the older attributes (``db.system``,
``db.name``, ``db.statement``, ``net.peer.name``) and no SQLSTATE. The statements are traced by
:class:`servicekit.storage.base.Cursor` instead, as on SQLite. ``db.namespace`` is
``{database}|{schema}``, as the semantic conventions write a schema-qualified namespace; no
span, log line or error message of this module carries the URL (it holds the password).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache, partial

import psycopg
from opentelemetry import trace
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from servicekit.storage.base import (
    DEFAULT_POOL_SIZE,
    TRACER_NAME,
    UTC_NOW,
    Cursor,
    Database,
    Migration,
    Seed,
    StatementTracing,
)

DB_SYSTEM = "postgresql"
UTC_NOW_SQL = "(to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))"
CONNECT_TIMEOUT_SECONDS = 10
PING_TIMEOUT_SECONDS = 2.0
# Transaction-scoped advisory lock on a text key (hashed to PostgreSQL's lock key space).
LOCK_STATEMENT = "SELECT pg_advisory_xact_lock(hashtext(%s))"


@lru_cache(maxsize=256)
def to_psycopg(statement: str) -> str:
    """``?`` placeholders as psycopg's ``%s``; a literal ``%`` doubled. The stores' statements
    are constants, so the cache holds them all."""
    return statement.replace("%", "%%").replace("?", "%s")


def _error_code(exc: BaseException) -> str | None:
    return exc.sqlstate if isinstance(exc, psycopg.Error) else None


def _use_schema(schema: str, conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))


def connection_attributes(url: str, schema: str) -> dict[str, str | int]:
    """``db.namespace`` (``{database}|{schema}``), ``server.address``, ``server.port`` of
    ``url``; nothing of its user or password."""
    info = conninfo_to_dict(url)
    attributes: dict[str, str | int] = {"db.namespace": f"{info.get('dbname', '')}|{schema}"}
    host = str(info.get("host", "") or "")
    if host and not host.startswith("/"):  # a unix socket directory is no server address
        attributes["server.address"] = host
        attributes["server.port"] = int(info.get("port") or 5432)
    return attributes


class PostgresDatabase(Database):
    """One service's schema in a PostgreSQL database, through a pool of traced connections."""

    system = DB_SYSTEM
    shared = True

    def __init__(
        self,
        url: str,
        schema: str,
        script: str,
        tracer_provider: trace.TracerProvider,
        pool_size: int = DEFAULT_POOL_SIZE,
        seeds: Sequence[Seed] = (),
        migrations: Sequence[Migration] = (),
    ) -> None:
        attributes = connection_attributes(url, schema)
        self.namespace = str(attributes["db.namespace"])
        self.schema = schema
        self._tracing = StatementTracing(
            tracer_provider.get_tracer(TRACER_NAME), DB_SYSTEM, attributes, _error_code
        )
        set_up_schema(url, schema, script, seeds, migrations)
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            },
            configure=partial(_use_schema, schema),
            name=schema,
            open=False,
        )
        self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)

    def _cursor(self, conn: psycopg.Connection, traced: bool = True) -> Cursor:
        return Cursor(conn.cursor(), to_psycopg, self._tracing if traced else None, LOCK_STATEMENT)

    @contextmanager
    def transaction(self, traced: bool = True) -> Iterator[Cursor]:
        """``BEGIN`` ... ``COMMIT`` (READ COMMITTED) on a pooled connection; rolled back on any
        exception."""
        with self.pool.connection() as conn, conn.transaction():
            yield self._cursor(conn, traced)

    @contextmanager
    def read(self, traced: bool = True) -> Iterator[Cursor]:
        with self.pool.connection() as conn:
            yield self._cursor(conn, traced)

    def ping(self) -> None:
        with self.pool.connection(timeout=PING_TIMEOUT_SECONDS) as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self.pool.close()


def set_up_schema(
    url: str,
    schema: str,
    script: str,
    seeds: Sequence[Seed] = (),
    migrations: Sequence[Migration] = (),
) -> None:
    """Create ``schema`` and its tables, seed and migrate them: idempotent, one transaction,
    serialised across processes by an advisory lock on the schema's name."""
    with (
        psycopg.connect(
            url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_SECONDS
        ) as conn,
        conn.transaction(),
    ):
        conn.execute(LOCK_STATEMENT, (f"schema {schema}",))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(script.replace(UTC_NOW, UTC_NOW_SQL))
        cur = Cursor(conn.cursor(), to_psycopg)
        for statement, rows in seeds:
            cur.executemany(statement, rows)
        for migrate in migrations:
            migrate(cur)
