"""Span names and attributes the instrumentations get wrong or leave out, per the current
OpenTelemetry semantic conventions (HTTP and database spans).

- HTTP client spans: contrib names them by the method alone (``POST``). The caller knows the
  route it calls, so :class:`~servicekit.http_client.Downstream` passes the template in the
  request's extensions and :func:`name_client_span` sets ``url.template`` and names the span
  ``{method} {url.template}`` (``POST /inventory/reserve``).
- HTTP server spans: the ASGI instrumentation writes the listening socket's ``host:port`` into
  ``server.address``; :func:`split_server_address` puts the name the client used there (the
  ``Host`` header, as the conventions say: ``inventory-service`` in compose, not the
  container's address) and the port in ``server.port``, so both ends of a call name one server.
- Database spans: :func:`summarize_sql` gives ``db.operation.name`` and ``db.collection.name``,
  which name the span ``{db.operation.name} {db.collection.name}`` (``SELECT reservations``);
  servicekit/storage/base.py traces the statements with it.
"""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from opentelemetry.instrumentation.httpx import RequestInfo
from opentelemetry.trace import Span

from servicekit.redaction import redact_url_attributes

# The httpx request extension that carries the route template of a call (``/orders/{order_id}``).
URL_TEMPLATE_EXTENSION = "url_template"


async def name_client_span(span: Span, request: RequestInfo) -> None:
    """``request_hook`` of the httpx instrumentation: ``url.template`` and the span name from the
    template the caller put in the request's extensions; a request without one keeps contrib's.
    An order id in ``url.full`` is redacted (:mod:`servicekit.redaction`)."""
    redact_url_attributes(span)
    template = (request.extensions or {}).get(URL_TEMPLATE_EXTENSION)
    if not template or not span.is_recording():
        return
    method = request.method.decode() if isinstance(request.method, bytes) else request.method
    span.set_attribute("url.template", template)
    span.update_name(f"{method} {template}")


def split_server_address(span: Span, scope: dict[str, Any]) -> None:
    """``server.address`` is the host alone (``inventory-service``, ``127.0.0.1``, ``::1``),
    ``server.port`` an int.

    Taken from the request's ``Host`` header (RFC 9110 7.2; the conventions' first source for
    servers) when it has one; its port, or failing that the listening socket's, is the port.
    A port in ``Host`` wins over the socket's that the instrumentation recorded: behind a
    balancer (`make up REPLICAS=N`) the client called the balancer's port, not the replica's.
    Without a ``Host`` header the socket's own pair in ``scope["server"]`` is used, else the
    value the ASGI instrumentation recorded is split (``[::1]:8080``, ``host:8080``, ``host``).
    """
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    recorded = attributes.get("server.address")
    if not isinstance(recorded, str):
        return
    server = scope.get("server")  # (host, port), the port None when it is the default
    socket_port = server[1] if server and isinstance(server[1], int) else None
    host_header = next(
        (value.decode("latin-1") for key, value in scope.get("headers") or () if key == b"host"),
        "",
    )
    named = None  # the port the client named in Host: through a balancer, the balancer's
    if host_header:
        host, named = host_and_port(host_header)
        port = named if named is not None else socket_port
    elif server and isinstance(server[0], str):
        host, port = server[0], socket_port
    else:
        host, port = host_and_port(recorded)
    span.set_attribute("server.address", host)
    if named is not None or (port is not None and "server.port" not in attributes):
        span.set_attribute("server.port", port)


def host_and_port(authority: str) -> tuple[str, int | None]:
    """``"[::1]:8080"`` -> ``("::1", 8080)``, ``"example.com"`` -> ``("example.com", None)``.

    A value that is not a host with an optional port (a bare IPv6 address, a port that is not a
    number) is returned whole as the host."""
    try:
        parts = urlsplit(f"//{authority}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return authority, None
    return (host, port) if host else (authority, None)


class SqlSummary(NamedTuple):
    """What a statement does, to what: the low-cardinality part of ``db.query.text``."""

    operation: str | None  # db.operation.name: the statement's first keyword, upper case
    collection: str | None  # db.collection.name: the first table it names

    def span_name(self, db_system: str) -> str:
        """``{db.operation.name} {db.collection.name}``, what of it is known, else the system."""
        return " ".join(part for part in (self.operation, self.collection) if part) or db_system


_OPERATION = re.compile(r"\s*(\w+)")
# The table follows FROM (SELECT, DELETE), INTO (INSERT, REPLACE) or UPDATE; quotes are dropped.
_COLLECTION = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+[\"`\[]?([\w.]+)", re.IGNORECASE)


@functools.lru_cache(maxsize=256)
def summarize_sql(statement: str) -> SqlSummary:
    """``"SELECT sku FROM reservations WHERE ..."`` -> ``SqlSummary("SELECT", "reservations")``.

    Parsed once per distinct statement (the services' statements are constants)."""
    operation = _OPERATION.match(statement)
    collection = _COLLECTION.search(statement)
    return SqlSummary(
        operation.group(1).upper() if operation else None,
        collection.group(1) if collection else None,
    )
