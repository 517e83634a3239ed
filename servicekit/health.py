"""``/healthz`` (the process is alive) and ``/readyz`` (it can serve: its database answers)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from servicekit.problems import ProblemError
from servicekit.telemetry import Telemetry

HEALTH_PATHS = ("/healthz", "/readyz")


def health_router(
    service_name: str, readiness_checks: list[Callable[[], None]], telemetry: Telemetry
) -> APIRouter:
    """``readiness_checks`` is read at request time, so checks added after creation count.
    ``/healthz`` also reports how many spans this process has finished (``spans_ended``) and,
    with OTLP export, how many the collector accepted (``spans_exported``) and how many were
    given up after failed exports (``spans_dropped``)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    def healthz() -> dict[str, str | int]:
        return {
            "status": "ok",
            "service": service_name,
            "spans_ended": telemetry.counter.ended,
            **telemetry.export_counts,
        }

    @router.get("/readyz")
    def readyz() -> dict[str, str]:
        for check in readiness_checks:
            try:
                check()
            except Exception as exc:
                raise ProblemError(
                    503, "Not ready", f"{service_name} is not ready: {exc}", service=service_name
                ) from exc
        return {"status": "ready", "service": service_name}

    return router
