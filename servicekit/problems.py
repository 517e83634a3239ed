"""RFC 9457 ``application/problem+json`` errors, each carrying the ``traceId`` of the request.

Every error a service returns goes through here, so a client always gets the same shape and can
open the failing trace directly; an unexpected exception becomes a 500 problem, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)
HTTP_TITLES = {
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    413: "Payload too large",
}


class ProblemError(Exception):
    """An error with an HTTP status, a short title and a human-readable detail.

    ``extra`` members (``sku``, ``service`` ...) are added to the body so a client can act on them;
    ``headers`` go on the response (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extra = extra


class RequestProblem(StarletteHTTPException):
    """A problem found while the request body is read (:mod:`servicekit.guard`): FastAPI passes
    an ``HTTPException`` raised there on as it is, and turns anything else into a bare 400."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status, detail, headers)
        self.title = title
        self.extra = extra


def current_trace_id() -> str | None:
    """The trace id of the current span, or None when it is not recorded (not sampled): an
    answer never names a trace that Jaeger will not have."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid and ctx.trace_flags.sampled else None


def problem_document(
    status: int, title: str, detail: str, trace_id: str | None, **extra: Any
) -> dict[str, Any]:
    """The problem+json body."""
    return {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "traceId": trace_id,
        **extra,
    }


def problem_response(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = problem_document(status, title, detail, current_trace_id(), **extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """Pydantic errors as ``{"field": "items.0.quantity", "message": ...}`` without input echo.

    The rejected input is deliberately left out: it may hold an email address or other PII.
    """
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        errors.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
    return errors


async def _on_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.title, exc.detail, exc.headers, **exc.extra)


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        return problem_response(400, "Malformed JSON", "The request body is not valid JSON.")
    errors = field_errors(exc)
    fields = ", ".join(sorted({e["field"] for e in errors}))
    return problem_response(422, "Invalid request", f"Invalid fields: {fields}", errors=errors)


# The methods a route may serve (RFC 9110 9.3 and PATCH); HEAD goes wherever GET does.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path, for the ``Allow`` header of a 405.

    Asked of each top-level route with the method swapped in, since an included router answers
    for its own routes (and Starlette's own 405 names only the first route's methods).
    """
    allowed = {
        method
        for method in METHODS
        for route in request.app.router.routes
        if route.matches({**request.scope, "method": method})[0] is Match.FULL
    }
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(sorted(allowed))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = getattr(exc, "title", None) or HTTP_TITLES.get(exc.status_code, "HTTP error")
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    extra = getattr(exc, "extra", {})
    return problem_response(
        exc.status_code, title, str(exc.detail), headers=headers or None, **extra
    )


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
    log.exception("unhandled error")
    return problem_response(500, "Internal error", "An unexpected error occurred.")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)


class Problem(BaseModel):
    """The problem+json body, for the OpenAPI schema (extra members such as ``sku`` allowed)."""

    model_config = ConfigDict(extra="allow")
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    traceId: str | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM_JSON: {}}}
    for code in (400, 401, 404, 405, 408, 409, 413, 415, 422, 431, 502, 503, 504)
}
