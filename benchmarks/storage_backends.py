"""Reservation cost on each storage backend: SQLite (a file) and PostgreSQL (a throwaway local
cluster from tests/postgres.py), through inventory-service's own store, untraced.

Each round is one reservation of one line and its release (two transactions); ``--threads``
workers share one store as FastAPI's thread pool does. Prints a Markdown table: per-round
latency (p50, p99, ms) and rounds per second. docs/benchmarks.md keeps a run's result.

    .venv/bin/python benchmarks/storage_backends.py [--rounds 400] [--threads 1 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.trace import NoOpTracerProvider

from inventory_service.store import SCHEMA, SEEDS, InventoryStore
from servicekit.storage import open_database
from tests.postgres import postgres_cluster


@contextmanager
def backends() -> Iterator[dict[str, str]]:
    """``DATABASE_URL`` by backend name."""
    with postgres_cluster() as cluster:
        yield {"sqlite": "", "postgresql": cluster.new_database()}


def run(store: InventoryStore, rounds: int, threads: int, tag: str) -> tuple[list[float], float]:
    """Per-round seconds, and the wall time of all rounds."""

    def one(i: int) -> float:
        started = time.perf_counter()
        store.reserve(f"{tag}-{i}", [("SKU123", 1)])
        store.release(f"{tag}-{i}")
        return time.perf_counter() - started

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        latencies = list(pool.map(one, range(rounds)))
    return latencies, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    print("| backend | threads | p50 ms | p99 ms | rounds/s |")
    print("| --- | --- | --- | --- | --- |")
    with backends() as urls, tempfile.TemporaryDirectory() as tmp:
        for name, url in urls.items():
            db = open_database(
                url,
                Path(tmp),
                "inventory.db",
                "inventory_service",
                SCHEMA,
                NoOpTracerProvider(),
                seeds=SEEDS,
            )
            store = InventoryStore(db)
            run(store, 50, 1, f"warm-{name}")
            for threads in args.threads:
                latencies, wall = run(store, args.rounds, threads, f"{name}-{threads}")
                cuts = statistics.quantiles(latencies, n=100)
                print(
                    f"| {name} | {threads} | {cuts[49] * 1000:.2f} | {cuts[98] * 1000:.2f}"
                    f" | {args.rounds / wall:.0f} |"
                )
            db.close()


if __name__ == "__main__":
    main()
