"""Reading traces back from Jaeger's HTTP query API (``/api/traces/{id}``).

Used by ``make demo`` and the end-to-end tests: both need "this exact trace, once it is all
there", polled with a deadline rather than a fixed sleep.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class StoredTrace:
    """One trace as Jaeger returned it, with the questions the demo and tests ask of it."""

    raw: dict[str, Any]

    @property
    def spans(self) -> list[dict[str, Any]]:
        return self.raw["spans"]

    def service_of(self, span: dict[str, Any]) -> str:
        return self.raw["processes"][span["processID"]]["serviceName"]

    @property
    def services(self) -> set[str]:
        return {self.service_of(span) for span in self.spans}

    @property
    def operations(self) -> set[str]:
        return {span["operationName"] for span in self.spans}

    @staticmethod
    def parent_id(span: dict[str, Any]) -> str | None:
        return next(
            (r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"), None
        )

    @property
    def roots(self) -> list[dict[str, Any]]:
        return [span for span in self.spans if self.parent_id(span) is None]

    @property
    def orphans(self) -> list[dict[str, Any]]:
        """Spans whose parent is not in the trace: the trace is incomplete or broken."""
        ids = {span["spanID"] for span in self.spans}
        return [s for s in self.spans if (p := self.parent_id(s)) is not None and p not in ids]

    @staticmethod
    def tags(span: dict[str, Any]) -> dict[str, Any]:
        return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


def fetch_trace(jaeger_url: str, trace_id: str, timeout: float = 5.0) -> StoredTrace | None:
    """The trace, or None while Jaeger does not have it (404)."""
    response = httpx.get(f"{jaeger_url}/api/traces/{trace_id}", timeout=timeout)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    data = response.json().get("data") or []
    return StoredTrace(data[0]) if data else None


def wait_for_trace(
    jaeger_url: str,
    trace_id: str,
    services: set[str],
    operations: frozenset[str] = frozenset(),
    timeout: float = 15.0,
) -> StoredTrace:
    """Poll until the trace has these services and operations and no span misses its parent.

    Raises ``TimeoutError`` with what was last seen, so a failure says what is missing.
    """
    deadline = time.monotonic() + timeout
    last: StoredTrace | None = None
    while True:
        try:
            last = fetch_trace(jaeger_url, trace_id)
        except httpx.TransportError:
            last = None
        if (
            last is not None
            and services <= last.services
            and operations <= last.operations
            and not last.orphans
        ):
            return last
        if time.monotonic() > deadline:
            seen = (
                "nothing"
                if last is None
                else f"{len(last.spans)} spans from {sorted(last.services)}, "
                f"{len(last.orphans)} without their parent"
            )
            raise TimeoutError(
                f"trace {trace_id} not complete in Jaeger after {timeout:.0f} s: saw {seen}; "
                f"wanted services {sorted(services)} and operations {sorted(operations)}"
            )
        time.sleep(0.1)
