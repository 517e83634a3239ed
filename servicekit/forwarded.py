"""Who the client is: the socket peer, or what trusted proxies in front say it is.

``Forwarded`` (RFC 7239), ``X-Forwarded-For`` and ``X-Real-IP`` are request headers anyone can
send. They are read only when the socket peer is one of ``TRUSTED_PROXIES`` (a comma-separated
list of addresses and networks, ``10.0.0.0/8, ::1``; default none: the peer is the client). Then
the chain the proxies appended is walked from the right, as RFC 7239 section 5.2 describes: each
hop that is a trusted proxy passes on to the hop before it; the first that is not is the
client. A hop that is not an IP address (``unknown``, an obfuscated ``_name``, any text) ends
the walk at the trusted proxy that reported it, so ``client.address`` is always an address
some trusted party saw. One header is read, the first present of ``Forwarded``,
``X-Forwarded-For``, ``X-Real-IP``; repeated fields of it are one list, in order.

uvicorn's own ``proxy_headers`` (on by default, trusting 127.0.0.1) rewrote the peer from
``X-Forwarded-For`` without either check; :func:`servicekit.app.serve` switches it off.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDING_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-real-ip")
_FOR = re.compile(r'(?:^|;)\s*for\s*=\s*("[^"]*"|[^;,\s]*)', re.IGNORECASE)


def parse_trusted_proxies(value: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, ::1"`` -> networks; raises ``ValueError`` naming a bad entry."""
    networks = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"TRUSTED_PROXIES: {entry!r} is not an address or network") from None
    return tuple(networks)


def ip_of(text: str) -> str | None:
    """The address in a hop (``192.0.2.1``, ``192.0.2.1:80``, ``"[2001:db8::1]:80"``), or None."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def forwarded_chain(name: bytes, values: Iterable[bytes]) -> list[str | None]:
    """The hops one header lists, client first; None where a hop is not an address."""
    text = ",".join(v.decode("latin-1") for v in values)
    if name == b"forwarded":
        hops = []
        for element in text.split(","):
            match = _FOR.search(element)
            hops.append(ip_of(match.group(1)) if match else None)
        return hops
    return [ip_of(hop) for hop in text.split(",")]


def is_trusted(address: str | None, trusted: Sequence[Network]) -> bool:
    if address is None or not trusted:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in trusted)


def client_address(
    peer: str | None, headers: Sequence[tuple[bytes, bytes]], trusted: Sequence[Network]
) -> str | None:
    """The client's address for a request from ``peer`` with these header fields."""
    if not is_trusted(peer, trusted):
        return peer
    for name in FORWARDING_HEADERS:
        values = [value for key, value in headers if key == name]
        if values:
            break
    else:
        return peer
    client = peer
    for hop in reversed(forwarded_chain(name, values)):
        if hop is None:
            break
        client = hop
        if not is_trusted(hop, trusted):
            break
    return client
