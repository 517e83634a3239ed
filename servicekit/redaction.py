"""Scrubbing client-supplied text before it reaches telemetry: no email address in spans or logs.

The server span records what the client sent in the URL and the ``User-Agent`` header
(``url.path``, ``url.query``, ``user_agent.original``), and the request log line names an
unmatched path as it came. A client may put anything there, an email address included (``GET
/api/orders/bob@example.com``, ``?email=...``, a crawler's contact address), so those values are
redacted on their way in. Email addresses sent in bodies never reach telemetry: only
notification-service receives them, and it keeps a hash.
"""

from __future__ import annotations

import re
from typing import Any

from opentelemetry.trace import Span

# Anything shaped like local@domain, also percent-encoded (%40) as in a raw query string. Broader
# than a valid address on purpose: over-redacting a URL is harmless, leaking an address is not.
# The lookbehind lets a match start only where a run of local-part characters starts: without
# it, a long run with no "@" is rescanned from every position, quadratic time on a path the
# client chose (a 30 kB path took 2.7 s of the event loop).
EMAIL = re.compile(r"(?<![\w.+%-])[\w.+%-]+(?:@|%40)[\w.-]+", re.IGNORECASE)
REDACTED = "[redacted-email]"
CLIENT_SUPPLIED_ATTRIBUTES = ("url.path", "url.query", "user_agent.original")


def redact(text: str) -> str:
    """``text`` with every email-shaped substring replaced by ``[redacted-email]``."""
    return EMAIL.sub(REDACTED, text)


def redact_server_span(span: Span, scope: dict[str, Any]) -> None:
    """``server_request_hook`` for the FastAPI instrumentation: runs once the server span has
    its request attributes, and overwrites the client-supplied ones that carry an address."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in CLIENT_SUPPLIED_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and EMAIL.search(value):
            span.set_attribute(key, redact(value))
