"""Who may inject faults: ``/admin/faults`` behind a bearer token, and at the public edge only
an authorised caller's fault baggage.

Without ``ADMIN_TOKEN`` configured the routes answer 404: disabled, not open.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from starlette.types import ASGIApp, Receive, Scope, Send

from servicekit.faults import BAGGAGE_PREFIX, ActiveFault, FaultInjector, RuntimeFault
from servicekit.problems import ProblemError

AuthorizationHeader = Annotated[str | None, Header(description="Bearer <ADMIN_TOKEN>")]


def is_authorised(expected: str, authorization: str | None) -> bool:
    """``authorization`` is ``Bearer <expected>``; never true when no token is configured."""
    scheme, _, token = (authorization or "").partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.encode(), expected.encode())
    )


def check_admin_token(expected: str, authorization: str | None) -> None:
    if not expected:
        raise ProblemError(404, "Not found", "Admin routes are disabled (no ADMIN_TOKEN set).")
    if not is_authorised(expected, authorization):
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


class ClientFaultBaggageFilter:
    """At the public edge: drop the ``fault.*`` members of a caller's baggage, keep the rest.

    Baggage travels to every hop, so a fault member from any client would fire in every service
    behind the gateway. Only a caller authorised like the admin routes (``Authorization: Bearer
    <ADMIN_TOKEN>``) keeps them, or every caller when the operator switched client fault baggage
    on (``allow_anonymous``, for a demo). Members are matched after the propagator decoded them
    (``fault%2E...`` is ``fault....``), in whatever position and header line they came. Runs
    inside the server span, before the fault middleware and any downstream call; the span gets a
    ``fault.baggage.dropped`` event with the number of members dropped.
    """

    def __init__(self, app: ASGIApp, admin_token: str, allow_anonymous: bool) -> None:
        self.app = app
        self.admin_token = admin_token
        self.allow_anonymous = allow_anonymous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = otel_context.get_current()
        faults = [
            key for key in baggage.get_all(ctx) if key.strip().lower().startswith(BAGGAGE_PREFIX)
        ]
        if scope["type"] != "http" or not faults or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        for key in faults:
            ctx = baggage.remove_baggage(key, ctx)
        trace.get_current_span().add_event(
            "fault.baggage.dropped", {"fault.baggage.dropped_members": len(faults)}
        )
        token = otel_context.attach(ctx)
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)

    def _allowed(self, scope: Scope) -> bool:
        if self.allow_anonymous:
            return True
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        return is_authorised(self.admin_token, authorization)
