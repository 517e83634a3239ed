"""Typed FastAPI dependencies for the services' routes (``Annotated[..., Depends]``).

A route names what it uses (``store: Store``, ``tracer: ServiceTracer``) instead of reaching
into ``request.app``; ``create_app`` puts each object on ``app.state`` once, under the name the
route's annotation reads.

The dependencies are ``async def`` although they only read an attribute: FastAPI runs a plain
``def`` dependency in its thread pool, a thread hop (and anyio's locks and cancel scopes around
it) on every request for a ``getattr``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from opentelemetry.trace import Tracer


def from_state(name: str) -> Any:
    """``Depends`` on ``request.app.state.<name>``, set by the service's ``create_app``."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return Depends(dependency)


async def _tracer(request: Request) -> Tracer:
    return request.app.telemetry.tracer


ServiceTracer = Annotated[Tracer, Depends(_tracer)]
