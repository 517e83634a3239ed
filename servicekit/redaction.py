"""Scrubbing text before it reaches telemetry: no email address and no order id in spans or logs.

The server span records what the client sent in the URL and the ``User-Agent`` header
(``url.path``, ``url.query``, ``user_agent.original``), and the request log line names an
unmatched path as it came. A client may put anything there, an email address included (``GET
/api/orders/bob@example.com``, ``?email=...``, a crawler's contact address), so those values are
redacted on their way in. Email addresses sent in bodies never reach telemetry: only
notification-service receives them, and it keeps a hash.

An order id is a bearer secret: it alone reads the order (``GET /api/orders/{orderId}``). Spans
and log lines carry :func:`order_id_hash` instead, as ``order.id_hash`` (and
``inventory.reservation_id_hash`` for a reservation, whose id is its order's), so an order's
traces stay findable by whoever already holds its id, and an id cannot be read back from them.
A URL that holds one (``url.path`` of a lookup, ``url.full`` of the gateway's calls to
order-service, a path in a log line) has it replaced by ``REDACTED``, as the semantic
conventions ask for credentials in URLs, and its span gets the hash. An unkeyed hash suffices:
the id is 128 random bits, so no guess finds it from its hash, and anyone with the id (the
client, support staff) can compute the hash to search for it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from opentelemetry.trace import Span

from servicekit.identifiers import ORDER_ID_PATTERN

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


# An order id inside a URL or free text: 32 hex digits not part of a longer run of letters and
# digits (a 64-digit hash is not an order id).
ORDER_ID = re.compile(rf"(?<![0-9A-Za-z]){ORDER_ID_PATTERN}(?![0-9A-Za-z])")
REDACTED_ID = "REDACTED"
ORDER_ID_HASH = "order.id_hash"
RESERVATION_ID_HASH = "inventory.reservation_id_hash"
URL_ATTRIBUTES = ("url.path", "url.query", "url.full")


def order_id_hash(order_id: str) -> str:
    """The non-secret reference to an order recorded in telemetry: SHA-256 of its id, 32 hex
    digits (``printf %s ID | sha256sum | cut -c1-32``)."""
    return hashlib.sha256(order_id.encode()).hexdigest()[:32]


def redact_order_ids(text: str) -> str:
    """``text`` with every order-id-shaped run replaced by ``REDACTED``."""
    return ORDER_ID.sub(REDACTED_ID, text)


def redact_url_attributes(span: Span) -> None:
    """Replace order ids in the span's URL attributes; the span gets the first one's hash."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and (found := ORDER_ID.search(value)):
            span.set_attribute(key, redact_order_ids(value))
            if ORDER_ID_HASH not in attributes:
                span.set_attribute(ORDER_ID_HASH, order_id_hash(found.group()))


def redact(text: str, pattern: re.Pattern[str] = EMAIL) -> str:
    """``text`` with every email-shaped substring replaced by ``[redacted-email]``; ``pattern``
    :data:`URL_EMAIL` for a URL's path or query."""
    if "@" not in text and "%40" not in text:  # most values: no scan at all
        return text
    return pattern.sub(REDACTED, text)


def redact_server_span(span: Span, scope: dict[str, Any]) -> None:
    """``server_request_hook`` for the FastAPI instrumentation: runs once the server span has
    its request attributes, and overwrites the client-supplied ones that carry an address or an
    order id."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key, pattern in CLIENT_SUPPLIED_ATTRIBUTES.items():
        value = attributes.get(key)
        if isinstance(value, str) and (redacted := redact(value, pattern)) != value:
            span.set_attribute(key, redacted)
    redact_url_attributes(span)
