"""``/admin/faults``: run-time fault injection, behind a bearer token.

Without ``ADMIN_TOKEN`` configured the routes answer 404: disabled, not open.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header

from servicekit.faults import ActiveFault, FaultInjector, RuntimeFault
from servicekit.problems import ProblemError

AuthorizationHeader = Annotated[str | None, Header(description="Bearer <ADMIN_TOKEN>")]


def check_admin_token(expected: str, authorization: str | None) -> None:
    if not expected:
        raise ProblemError(404, "Not found", "Admin routes are disabled (no ADMIN_TOKEN set).")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise ProblemError(401, "Unauthorized", "A valid bearer token is required.")


def require_admin_token(expected: str) -> Any:
    """A router dependency: runs before body validation, so an anonymous caller learns nothing."""

    def dependency(authorization: AuthorizationHeader = None) -> None:
        check_admin_token(expected, authorization)

    return Depends(dependency)


def describe(fault: ActiveFault) -> dict[str, Any]:
    return {"id": fault.id, "source": fault.source, **fault.spec.model_dump()}


def admin_router(injector: FaultInjector, admin_token: str) -> APIRouter:
    router = APIRouter(
        prefix="/admin", tags=["admin"], dependencies=[require_admin_token(admin_token)]
    )

    @router.get("/faults")
    def list_faults() -> dict[str, Any]:
        return {
            "service": injector.service_name,
            "faults": [describe(f) for f in injector.active()],
        }

    @router.post("/faults", status_code=201)
    def add_fault(fault: RuntimeFault) -> dict[str, Any]:
        return {"service": injector.service_name, **describe(injector.add(fault))}

    @router.delete("/faults")
    def clear_faults() -> dict[str, Any]:
        return {"service": injector.service_name, "cleared": injector.clear()}

    return router
