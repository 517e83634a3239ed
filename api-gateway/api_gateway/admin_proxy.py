"""``/api/admin/faults/{service}``: the gateway's one entry to every service's fault admin.

The router is included behind ``require_admin_token``; each call is forwarded, with the
caller's ``Authorization``, to the named service's ``/admin/faults``, which checks the token
again. ``app.state.admin_targets`` maps each service of the catalog to its traced client (the
gateway reaches itself in process).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from servicekit.catalog import SERVICE_NAMES
from servicekit.dependencies import from_state
from servicekit.faults import RuntimeFault
from servicekit.http_client import Downstream

admin_proxy = APIRouter(prefix="/api/admin", tags=["admin"])
ServiceName = StrEnum("ServiceName", [(name, name) for name in SERVICE_NAMES])
Targets = Annotated[dict[str, Downstream], from_state("admin_targets")]


async def _forward(service: ServiceName, request: Request, targets: Targets) -> JSONResponse:
    upstream = await targets[service].request(
        request.method,
        "/admin/faults",
        content=await request.body(),
        headers={
            "authorization": request.headers.get("authorization", ""),
            "content-type": "application/json",
        },
    )
    return JSONResponse(upstream.json(), status_code=upstream.status_code)


@admin_proxy.get("/faults/{service}")
async def list_faults(service: ServiceName, request: Request, targets: Targets) -> Any:
    """A service's active faults (standing and run-time), from its ``/admin/faults``."""
    return await _forward(service, request, targets)


@admin_proxy.post("/faults/{service}", status_code=status.HTTP_201_CREATED)
async def add_fault(
    service: ServiceName, fault: RuntimeFault, request: Request, targets: Targets
) -> Any:
    """Inject a fault into a service for ``duration_seconds``."""
    return await _forward(service, request, targets)


@admin_proxy.delete("/faults/{service}")
async def clear_faults(service: ServiceName, request: Request, targets: Targets) -> Any:
    """Clear a service's run-time faults."""
    return await _forward(service, request, targets)
