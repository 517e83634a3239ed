"""Where the services keep their state: one storage layer, two backends, chosen by
``DATABASE_URL``.

* empty (the default): SQLite, one file per service under ``DATA_DIR``
  (:mod:`servicekit.storage.sqlite`), for one process of each service;
* ``postgresql://user:password@host:port/database``: PostgreSQL, shared by every process of
  every service, each service in its own schema named after its package
  (:mod:`servicekit.storage.postgres`).

The stores write their SQL once for both (:mod:`servicekit.storage.base`): ``?`` placeholders,
``INSERT ... ON CONFLICT DO NOTHING``, ``RETURNING``, :data:`UTC_NOW` for a default timestamp;
values are always parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace

from servicekit.storage.base import DEFAULT_POOL_SIZE, UTC_NOW, Cursor, Database, Migration, Seed

__all__ = [
    "DEFAULT_POOL_SIZE",
    "UTC_NOW",
    "Cursor",
    "Database",
    "Migration",
    "Seed",
    "open_database",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_database(
    url: str,
    data_dir: Path,
    file_name: str,
    schema: str,
    script: str,
    tracer_provider: trace.TracerProvider,
    pool_size: int = DEFAULT_POOL_SIZE,
    seeds: Sequence[Seed] = (),
    migrations: Sequence[Migration] = (),
) -> Database:
    """The store ``url`` names, its schema created and migrated.

    ``url`` empty: SQLite at ``data_dir / file_name``; a PostgreSQL URL: schema ``schema`` there,
    through a pool of ``pool_size`` connections. Raises ``ValueError`` for another scheme (the
    message does not repeat the URL: it may hold a password).
    """
    # Each backend's module is imported when chosen: SQLite's processes never load psycopg.
    if not url:
        from servicekit.storage.sqlite import SqliteDatabase

        return SqliteDatabase(data_dir / file_name, script, tracer_provider, seeds, migrations)
    if url.startswith(POSTGRES_SCHEMES):
        from servicekit.storage.postgres import PostgresDatabase

        return PostgresDatabase(url, schema, script, tracer_provider, pool_size, seeds, migrations)
    raise ValueError("DATABASE_URL: expected empty (SQLite) or postgresql://...")
