"""The FastAPI app factory every service uses, and the process entry point that serves it."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

import httpx
import uvicorn
from fastapi import APIRouter, FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Span
from starlette.background import BackgroundTask

from servicekit.admin import admin_router
from servicekit.catalog import SERVICES
from servicekit.deadline import DeadlineMiddleware
from servicekit.edge import HeadAsGetMiddleware, serve_edge
from servicekit.faults import FaultInjector, FaultMiddleware, parse_faults
from servicekit.forwarded import Network, parse_trusted_proxies
from servicekit.guard import RequestGuardMiddleware
from servicekit.head_limits import RequestHeadLimitMiddleware
from servicekit.health import HEALTH_PATHS, health_router
from servicekit.http_client import Downstream
from servicekit.logs import configure_logging
from servicekit.problems import PROBLEM_RESPONSES, install_problem_handlers
from servicekit.redaction import redact_server_span
from servicekit.semconv import split_server_address
from servicekit.server import bounded_protocol
from servicekit.settings import ServiceSettings
from servicekit.storage import Database, Migration, Seed, open_database
from servicekit.telemetry import Telemetry

try:
    SERVICE_VERSION = metadata.version("otel-order-stack")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    SERVICE_VERSION = "0.0.0"

log = logging.getLogger(__name__)
_PACKAGES = {spec.name: spec.package for spec in SERVICES}  # service.name: its schema
ShutdownHook = Callable[[], Awaitable[None] | None]


class ServiceApp(FastAPI):
    """A FastAPI app that knows its telemetry, readiness checks and shutdown hooks."""

    telemetry: Telemetry
    readiness_checks: list[Callable[[], None]]
    shutdown_hooks: list[ShutdownHook]
    periodic: list[tuple[float, Callable[[], Awaitable[None]]]]
    fault_injector: FaultInjector
    trusted_proxies: tuple[Network, ...] = ()
    http_client_transport: str = "aiohttp"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Outside everything, the server span included: see :mod:`servicekit.edge`."""
        await serve_edge(super().__call__, HEALTH_PATHS, self.trusted_proxies, scope, receive, send)

    def include_router(self, router: APIRouter, **kwargs: Any) -> None:  # type: ignore[override]
        """Document the problem+json answers every route can give (422, 413, 415, 503 ...)."""
        kwargs.setdefault("responses", PROBLEM_RESPONSES)
        super().include_router(router, **kwargs)

    def open_database(
        self,
        settings: ServiceSettings,
        file_name: str,
        script: str,
        seeds: Sequence[Seed] = (),
        migrations: Sequence[Migration] = (),
    ) -> Database:
        """The service's store (:func:`servicekit.storage.open_database`): ``DATABASE_URL``'s
        PostgreSQL schema named after the service's package, else the SQLite file ``file_name``
        under ``DATA_DIR``. Traced, checked by ``/readyz``, closed on shutdown."""
        db = open_database(
            settings.database_url.get_secret_value(),
            settings.data_dir,
            file_name,
            _PACKAGES.get(self.title, self.title.replace("-", "_")),
            script,
            self.telemetry.provider,
            settings.database_pool_size,
            seeds,
            migrations,
        )
        if settings.database_thread_pool == "always":
            db.inline = False  # every call through the thread pool (docs/benchmarks.md)
        self.readiness_checks.append(db.ping)
        self.shutdown_hooks.append(db.close)
        return db

    def every(self, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` every ``seconds`` while the app serves (from start-up to shutdown); a
        failing run is logged and the next one comes all the same."""
        self.periodic.append((seconds, job))

    def downstream(
        self,
        name: str,
        base_url: str,
        timeout_seconds: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Downstream:
        """A traced client for another service, closed on shutdown; ``transport`` defaults to
        the one ``HTTP_CLIENT_TRANSPORT`` names."""
        client = Downstream(
            name,
            base_url,
            timeout_seconds,
            self.telemetry.provider,
            transport or self.http_client_transport,
        )
        self.shutdown_hooks.append(client.aclose)
        return client


def create_service_app(
    name: str,
    settings: ServiceSettings,
    exporter: SpanExporter | None = None,
    public_edge: bool = False,
) -> ServiceApp:
    """A FastAPI app with tracing, problem+json errors, health, request limits and logging.

    ``exporter`` is for in-process tests (an ``InMemorySpanExporter``); without it spans go to
    the OTLP endpoint from ``OTEL_EXPORTER_OTLP_ENDPOINT``. Services add their routers, readiness
    checks (``/readyz``) and shutdown hooks to the returned app. On shutdown (SIGTERM) the hooks
    run first, then the tracer provider is shut down so pending spans are flushed before exit,
    and the log says how many were exported. ``public_edge``: the service takes requests from
    outside (the gateway), so it makes its own sampling decision (servicekit/sampling.py).
    """

    @asynccontextmanager
    async def lifespan(app: ServiceApp) -> AsyncIterator[None]:
        jobs = [asyncio.create_task(_repeat(seconds, job)) for seconds, job in app.periodic]
        yield
        for task in jobs:  # before the hooks close what the jobs use
            task.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        for hook in app.shutdown_hooks:
            result = hook()
            if inspect.isawaitable(result):
                await result
        delivered, outcome = app.telemetry.shutdown()
        log.log(logging.INFO if delivered else logging.ERROR, outcome)

    # No trailing-slash redirect: Starlette builds its Location from the client's Host header.
    app = ServiceApp(title=name, version=SERVICE_VERSION, lifespan=lifespan, redirect_slashes=False)
    app.telemetry = Telemetry.create(
        name,
        SERVICE_VERSION,
        exporter=exporter,
        set_global=exporter is None,
        public_edge=public_edge,
    )
    app.readiness_checks = []
    app.shutdown_hooks = []
    app.periodic = []
    app.trusted_proxies = parse_trusted_proxies(settings.trusted_proxies)
    app.http_client_transport = settings.http_client_transport
    app.fault_injector = FaultInjector(
        service_name=name,
        standing=parse_faults(settings.faults),
        seed=settings.fault_seed,
        timeout_hang_ms=settings.fault_timeout_ms,
        allow_baggage=settings.fault_baggage_enabled,
    )
    install_problem_handlers(app)
    app.include_router(health_router(name, app.readiness_checks, app.telemetry))
    if settings.admin_token:  # without one the routes do not exist: 404 for every method
        app.include_router(admin_router(app.fault_injector, settings.admin_token))
    # Starlette runs the last added middleware first: body limits and the request log, head
    # limits, deadline, faults, HEAD, then routes.
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(FaultMiddleware, injector=app.fault_injector, skip_paths=HEALTH_PATHS)
    app.add_middleware(DeadlineMiddleware)
    app.add_middleware(
        RequestHeadLimitMiddleware,
        max_uri_bytes=settings.max_uri_bytes,
        max_header_bytes=settings.max_header_bytes,
    )
    app.add_middleware(
        RequestGuardMiddleware,
        max_body_bytes=settings.max_body_bytes,
        quiet_paths=HEALTH_PATHS,
        body_timeout_seconds=settings.request_body_timeout_seconds,
    )
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=app.telemetry.provider,
        excluded_urls="",  # health routes are excluded by exact path in ServiceApp.__call__
        exclude_spans=["receive", "send"],
        server_request_hook=_server_request_hook,
    )
    _untrace_background_tasks()
    return app


async def _repeat(seconds: float, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception:
            log.exception("periodic %s failed", getattr(job, "__qualname__", job))


def _server_request_hook(span: Span, scope: dict[str, Any]) -> None:
    redact_server_span(span, scope)
    split_server_address(span, scope)


def _untrace_background_tasks() -> None:
    """Undo the FastAPI instrumentation's ``BackgroundTask {func}`` span.

    It patches ``BackgroundTask.__call__`` once per process, with the tracer of the first app it
    instruments, so with several apps in one process (the in-process tests) the span lands in
    whichever service came first; and it only wraps the task's own span (``send_notification``
    in notification-service, which has the attributes). The original ``__call__`` is put back
    and the instrumentation's marker left in place, so no later app patches the class again.
    tests/unit/test_span_names.py fails if the span comes back (a contrib upgrade).
    """
    original = getattr(BackgroundTask, "_otel_original_call", None)
    if original is not None:
        BackgroundTask.__call__ = original  # type: ignore[method-assign]


def serve(name: str, app_factory: Callable[[], FastAPI], settings: ServiceSettings) -> None:
    """Run one service under uvicorn; SIGTERM triggers a graceful stop and the span flush.

    The HTTP protocol is uvicorn's httptools one with the slow-client bounds (see
    :mod:`servicekit.server`). Each request's task starts from an empty context
    (``reset_contextvars``): a request pipelined behind another on one connection would otherwise
    start inside the previous request's server span (uvicorn issue #2167) and join its trace.
    uvicorn's ``proxy_headers`` is off: forwarding headers are read only from
    ``TRUSTED_PROXIES`` (:mod:`servicekit.forwarded`)."""
    configure_logging(name, settings.log_level)
    # While the span export thread encodes a batch it holds the GIL; a request that arrives then
    # waits up to one switch interval (docs/benchmarks.md measures the setting).
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    app = app_factory()
    if settings.gc_freeze:
        # Spans wait in the export queue long enough to reach the oldest generation, so they
        # trigger full collections; frozen, the ~85,000 start-up objects are not scanned by them.
        gc.collect()
        gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        http=bounded_protocol(settings.request_head_timeout_seconds, settings.max_connections),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        reset_contextvars=True,
        proxy_headers=False,
    )
