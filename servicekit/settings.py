"""Settings every service shares, read from environment variables (pydantic-settings).

Each service subclasses :class:`ServiceSettings` to add its port (``GATEWAY_PORT`` ...) and its
own knobs. Telemetry is not configured here: it reads the standard ``OTEL_*`` variables itself.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", validation_alias="HOST", description="bind address")
    port: int = Field(8000, description="overridden per service, e.g. GATEWAY_PORT")
    data_dir: Path = Field(Path("data"), validation_alias="DATA_DIR")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    max_body_bytes: int = Field(
        64 * 1024, validation_alias="MAX_BODY_BYTES", description="larger bodies get 413"
    )
    request_head_timeout_seconds: float = Field(
        10.0,
        gt=0,
        validation_alias="REQUEST_HEAD_TIMEOUT_SECONDS",
        description="a request head not received in this time: 408 and the connection closed",
    )
    request_body_timeout_seconds: float = Field(
        20.0,
        gt=0,
        validation_alias="REQUEST_BODY_TIMEOUT_SECONDS",
        description="a request body not received in this time after its head: 408",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        validation_alias="MAX_CONNECTIONS",
        description="connections one process holds; more are refused with 503",
    )
    admin_token: str = Field(
        "", validation_alias="ADMIN_TOKEN", description="bearer token for /admin; empty: disabled"
    )
    faults: str = Field("", validation_alias="FAULTS", description="standing faults, see faults.py")
    fault_seed: int | None = Field(None, validation_alias="FAULT_SEED")
    fault_timeout_ms: int = Field(30_000, ge=0, validation_alias="FAULT_TIMEOUT_MS")
    fault_baggage_enabled: bool = Field(True, validation_alias="FAULT_BAGGAGE_ENABLED")
