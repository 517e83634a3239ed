"""Settings every service shares, read from environment variables (pydantic-settings).

Each field reads the environment variable of its name (``data_dir``: ``DATA_DIR``; the case does
not matter). Each service subclasses :class:`ServiceSettings` with its port and standing faults
(:func:`service_port`, :func:`service_faults`, from its :mod:`servicekit.catalog` entry) and its
own knobs. Telemetry is not configured here: it reads the standard ``OTEL_*`` variables itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.catalog import ServiceSpec
from servicekit.storage.base import DEFAULT_POOL_SIZE


class ServerBounds(BaseSettings):
    """What every HTTP server of the stack bounds (:func:`servicekit.server.bounded_protocol`):
    the services, the trace browser and the Host-checking fronts, by the same variables."""

    model_config = SettingsConfigDict(extra="ignore")

    request_head_timeout_seconds: float = Field(
        10.0, gt=0, description="a request head not received in this time: 408 and close"
    )
    max_connections: int = Field(
        1000, ge=1, description="connections one process holds; more are refused with 503"
    )


class ServiceSettings(ServerBounds):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8000, description="overridden per service: service_port()")
    data_dir: Path = Path("data")
    database_url: SecretStr = Field(
        SecretStr(""),
        description="empty: SQLite under DATA_DIR; postgresql://user:password@host:port/db:"
        " PostgreSQL, each service in a schema named after its package (a secret)",
    )
    database_pool_size: int = Field(
        DEFAULT_POOL_SIZE, ge=1, description="PostgreSQL connections one process holds at most"
    )
    database_thread_pool: Literal["auto", "always"] = Field(
        "auto",
        description="auto: SQLite's statements on the event loop, PostgreSQL's in the thread"
        " pool; always: every store call in the thread pool (servicekit/storage/base.py)",
    )
    log_level: str = "INFO"
    max_body_bytes: int = Field(64 * 1024, description="larger bodies get 413")
    max_uri_bytes: int = Field(8192, gt=0, description="longer request targets get 414")
    max_header_bytes: int = Field(
        16384, gt=0, description="larger header fields (in total) get 431"
    )
    request_body_timeout_seconds: float = Field(
        20.0, gt=0, description="a request body not received in this time after its head: 408"
    )
    switch_interval_ms: float = Field(
        5.0, gt=0, description="how long a thread holds the GIL before another may run"
    )
    http_client_transport: Literal["aiohttp", "httpcore"] = Field(
        "aiohttp", description="what carries calls to other services: servicekit/http_client.py"
    )
    gc_freeze: bool = Field(
        True, description="move the objects made at start-up out of the garbage collector's view"
    )
    trusted_proxies: str = Field(
        "",
        description="addresses/networks whose Forwarded, X-Forwarded-For, X-Real-IP are read;"
        " empty: none, the socket peer is the client",
    )
    admin_token: str = Field("", description="bearer token for /admin; empty: disabled")
    faults: str = Field("", description="standing faults, see faults.py; service_faults()")
    fault_seed: int | None = None
    fault_timeout_ms: int = Field(30_000, ge=0)
    fault_baggage_enabled: bool = True


def service_port(spec: ServiceSpec) -> Any:
    """The ``port`` field of ``spec``'s settings: ``<PREFIX>_PORT``, its default port."""
    return Field(spec.default_port, validation_alias=spec.port_variable)


def service_faults(spec: ServiceSpec) -> Any:
    """The ``faults`` field of ``spec``'s settings: ``<PREFIX>_FAULTS``, else ``FAULTS``."""
    return Field(
        "",
        validation_alias=AliasChoices(spec.faults_variable, "FAULTS"),
        description="standing faults, see faults.py",
    )
