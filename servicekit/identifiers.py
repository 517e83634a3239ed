"""The identifiers the services exchange and route on (skus, order ids): one shape everywhere.

Letters, digits, ``_ . -``, starting with a letter or digit, at most 64 characters: safe in a
URL path, a log line and a span attribute without escaping.
"""

from __future__ import annotations

import secrets

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
IDENTIFIER_MAX_LENGTH = 64

# An order id is 128 random bits, 32 hex digits: whoever holds it may read the order, so it is
# a bearer secret (servicekit.redaction keeps it out of telemetry).
ORDER_ID_BYTES = 16
ORDER_ID_PATTERN = rf"[0-9a-fA-F]{{{2 * ORDER_ID_BYTES}}}"


def new_order_id() -> str:
    return secrets.token_hex(ORDER_ID_BYTES)
