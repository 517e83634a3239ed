"""The identifiers the services exchange and route on (skus, order ids): one shape everywhere.

Letters, digits, ``_ . -``, starting with a letter or digit, at most 64 characters: safe in a
URL path, a log line and a span attribute without escaping.
"""

from __future__ import annotations

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
IDENTIFIER_MAX_LENGTH = 64
