"""Durations written as text: Jaeger UI's ``minDuration=100ms``, the analyzer's thresholds
(``200ms``) and lookbacks (``1h``). Microseconds per unit, for every reader of them; each
reader's own pattern says which units it takes."""

from __future__ import annotations

MINUTE_US = 60_000_000
UNIT_US: dict[str, float] = {"ns": 0.001, "us": 1, "µs": 1, "ms": 1_000, "s": 1_000_000}
UNIT_US |= {"m": MINUTE_US, "h": 60 * MINUTE_US, "d": 24 * 60 * MINUTE_US}
UNIT_US["w"] = 7 * UNIT_US["d"]
