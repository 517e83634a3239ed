"""The storage tests: the stores on both backends, and PostgreSQL shared by several processes.

SQLite runs in-process on a temporary file; PostgreSQL is a real throwaway cluster
(:mod:`tests.postgres`), one per session, with a fresh database per test.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from servicekit.storage import Database, Migration, Seed, open_database
from tests.postgres import Cluster, postgres  # noqa: F401 (the session's cluster fixture)

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """``DATABASE_URL`` of each backend: empty (SQLite) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return ""
    cluster: Cluster = request.getfixturevalue("postgres")
    return cluster.new_database()


@pytest.fixture
def pg_url(postgres: Cluster) -> str:  # noqa: F811 (the fixture imported above)
    """A fresh PostgreSQL database."""
    return postgres.new_database()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def open_db(
    url: str,
    data_dir: Path,
    schema: str,
    script: str,
    seeds: Sequence[Seed] = (),
    migrations: Sequence[Migration] = (),
    provider: trace.TracerProvider | None = None,
) -> Database:
    """A store's database as its service opens it (file ``<schema>.db`` on SQLite)."""
    return open_database(
        url,
        data_dir,
        f"{schema}.db",
        schema,
        script,
        provider or TracerProvider(),
        pool_size=4,
        seeds=seeds,
        migrations=migrations,
    )


async def shut_down(apps: Sequence[FastAPI]) -> None:
    """What each app's lifespan does at shutdown: its hooks (pools closed, clients closed)."""
    for app in apps:
        for hook in app.shutdown_hooks:  # type: ignore[attr-defined]
            result = hook()
            if inspect.isawaitable(result):
                await result
