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

# Anything shaped like local@domain, also percent-encoded (%40) as in a raw query string. The
# local part is a run of the characters RFC 5322 (3.2.3, 3.4.1) allows there (atext and dots,
# letters beyond ASCII as RFC 6531 adds, % for a percent-encoded one), or a quoted string; the
# domain a [literal] or the rest of the run (over any further "@"). Broader than a valid address
# on purpose: over-redacting is harmless, leaking part of an address is not, so a match takes
# the whole run around the "@".
# In a URL, "/", "?", "&" and "=" delimit segments and parameters (RFC 3986): an address there
# carries them percent-encoded (a%2Fb@...), so in url.path and url.query they end a local part
# ("e=first!last@x" -> "e=[redacted-email]"); in free text (User-Agent) they belong to it.
# The lookbehinds let a match start only where a run (or a quoted string) starts: without them,
# a long run with no "@" is rescanned from every position, quadratic time on a path the client
# chose (a 30 kB path took 2.7 s of the event loop).
ATEXT = r"\w.!#$%&'*+/=?^`{|}~-"
URL_DELIMITERS = "/?&="
REDACTED = "[redacted-email]"


def _email_pattern(local: str) -> re.Pattern[str]:
    return re.compile(
        rf'(?:(?<![@{local}])[{local}]+|(?<![\\\w])"(?:[^"\\\r\n]|\\.)*")'
        rf"(?:@|%40)(?:\[[^\]\s]*\]|[@{local}]+)",
        re.IGNORECASE,
    )


EMAIL = _email_pattern(ATEXT)
URL_EMAIL = _email_pattern("".join(c for c in ATEXT if c not in URL_DELIMITERS))
# The server span's attributes a client writes, each with the pattern for its syntax.
CLIENT_SUPPLIED_ATTRIBUTES = {
    "url.path": URL_EMAIL,
    "url.query": URL_EMAIL,
    "user_agent.original": EMAIL,
}


def redact(text: str, pattern: re.Pattern[str] = EMAIL) -> str:
    """``text`` with every email-shaped substring replaced by ``[redacted-email]``; ``pattern``
    :data:`URL_EMAIL` for a URL's path or query."""
    if "@" not in text and "%40" not in text:  # most values: no scan at all
        return text
    return pattern.sub(REDACTED, text)


def redact_server_span(span: Span, scope: dict[str, Any]) -> None:
    """``server_request_hook`` for the FastAPI instrumentation: runs once the server span has
    its request attributes, and overwrites the client-supplied ones that carry an address."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key, pattern in CLIENT_SUPPLIED_ATTRIBUTES.items():
        value = attributes.get(key)
        if isinstance(value, str) and (redacted := redact(value, pattern)) != value:
            span.set_attribute(key, redacted)
