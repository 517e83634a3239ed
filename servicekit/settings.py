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
