"""The loopback-Host rule: a page meant for this machine answers only requests that name it.

Binding to 127.0.0.1 keeps other machines out, not other web sites: a page from
``http://rebind.attacker.example:16680/`` whose DNS name is re-pointed to 127.0.0.1 after it
loaded is, for the victim's browser, the same origin as that name, so its script can read
whatever a loopback-only server answers (DNS rebinding). What such a request cannot change is
the ``Host`` it carries: the attacker's name. So a loopback-only server answers only a ``Host``
that is a loopback name or address, or a name the operator allowed (``LOOPBACK_ALLOWED_HOSTS``).

Accepted (with or without a port, any letter case, one trailing dot):

* ``localhost`` and names under ``.localhost``: RFC 6761, 6.3 reserves them for loopback, and no
  public DNS zone can hold them, so no attacker can point one at a page of theirs;
* IPv4 addresses in 127.0.0.0/8, in every form a browser reads as IPv4 (WHATWG URL's IPv4
  parser: ``127.1``, ``2130706433``, ``0x7f.1``, ``0177.0.0.1``); ``[::1]`` and
  ``[::ffff:127.0.0.1]``;
* the operator's names and addresses, compared after the same normalisation.

Refused: a ``Host`` that is absent or given twice, or not ``host[:port]`` (userinfo, a zone id,
a bad port, stray characters): 400 (RFC 9112, 3.2 says so for each); any other name or
address: 421 Misdirected Request (RFC 9110, 15.5.20: this server will not answer for that
authority). The refusal is a short text/plain body that names the rule and holds no data.
For a request in absolute form the target's authority stands for ``Host`` (RFC 9112, 3.2.2);
:class:`servicekit.server.BoundedHttpToolsProtocol` puts it there.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

ALLOWED_HOSTS_VARIABLE = "LOOPBACK_ALLOWED_HOSTS"
_PORT = re.compile(r"[0-9]{0,5}")
# RFC 3986 reg-name characters (unreserved, pct-encoded, sub-delims), without ":" and "@".
_REG_NAME = re.compile(r"[a-z0-9\-._~%!$&'()*+,;=]+")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class BadHost(ValueError):
    """The ``Host`` value is not ``host[:port]``."""


@dataclass(frozen=True)
class HostName:
    """A ``Host`` value normalised: ``address`` when the host is an IP address, else ``name``
    (lowercase, no trailing dot)."""

    name: str
    address: Address | None

    @property
    def loopback(self) -> bool:
        if self.address is not None:
            mapped = getattr(self.address, "ipv4_mapped", None)
            return self.address.is_loopback or bool(mapped and mapped.is_loopback)
        return self.name == "localhost" or self.name.endswith(".localhost")


def parse_host(value: str) -> HostName:
    """``Host: value`` (``host[:port]``) as a :class:`HostName`; raises :class:`BadHost`."""
    value = value.strip().lower()
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and _PORT.fullmatch(rest[1:]))):
            raise BadHost(f"unbalanced brackets or a bad port in {value!r}")
        if "%" in inside:  # a zone id has no meaning to another host (and no place in Host)
            raise BadHost(f"an IPv6 zone id in {value!r}")
        try:
            return HostName(inside, ipaddress.IPv6Address(inside))
        except ValueError:
            raise BadHost(f"{inside!r} is not an IPv6 address") from None
    host, colon, port = value.rpartition(":")
    if not colon:
        host = port
    elif not _PORT.fullmatch(port) or (port and int(port) > 65535):
        raise BadHost(f"a bad port in {value!r}")
    host = host.removesuffix(".")
    if not host or not _REG_NAME.fullmatch(host):
        raise BadHost(f"{value!r} is not host[:port]")
    return HostName(host, whatwg_ipv4(host))


def whatwg_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a browser reads in ``host`` (WHATWG URL, "IPv4 parser": up to four
    parts, each decimal, ``0x`` hex or ``0``-octal, the last filling the remaining bytes), or
    None when ``host`` is a domain name (its last label is not a number).

    Raises :class:`BadHost` for a host a browser refuses as IPv4 (``127.0.0.1.5``, ``0x7g``).
    """
    parts = host.split(".")
    if not _number(parts[-1]):
        return None
    if len(parts) > 4:
        raise BadHost(f"{host!r} is not an IPv4 address")
    values = []
    for part in parts:
        if not _number(part):
            raise BadHost(f"{host!r} is not an IPv4 address")
        values.append(_parse_number(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        raise BadHost(f"{host!r} is out of the IPv4 range")
    number = last + sum(v * 256 ** (3 - i) for i, v in enumerate(head))
    return ipaddress.IPv4Address(number)


def _number(part: str) -> bool:
    if part[:2] == "0x":
        return all(c in "0123456789abcdef" for c in part[2:])
    return part.isdigit() and part.isascii()


def _parse_number(part: str) -> int:
    if part[:2] == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part[0] == "0":
        if any(c in "89" for c in part):
            raise BadHost(f"{part!r} is not an octal number")
        return int(part, 8)
    return int(part)


@dataclass(frozen=True)
class HostRule:
    """Loopback names and addresses, and the operator's ``allowed`` ones (normalised)."""

    allowed_names: frozenset[str] = frozenset()
    allowed_addresses: frozenset[Address] = frozenset()

    @classmethod
    def allowing(cls, allowed: Iterable[str] = ()) -> HostRule:
        """``allowed``: host names or addresses (a port, if given, is ignored). Raises
        :class:`BadHost` for an entry that is not a host."""
        names, addresses = set(), set()
        for entry in allowed:
            if entry.strip():
                host = parse_host(entry)
                if host.address is None:
                    names.add(host.name)
                else:
                    addresses.add(host.address)
        return cls(frozenset(names), frozenset(addresses))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> HostRule:
        """:meth:`allowing` the comma-separated ``LOOPBACK_ALLOWED_HOSTS``."""
        env = dict(os.environ) if env is None else env
        return cls.allowing(env.get(ALLOWED_HOSTS_VARIABLE, "").split(","))

    def accepts(self, host: HostName) -> bool:
        if host.loopback:
            return True
        if host.address is not None:
            return host.address in self.allowed_addresses
        return host.name in self.allowed_names

    def refusal(self, headers: Iterable[tuple[bytes, bytes]]) -> tuple[int, str] | None:
        """None when a request with these header fields may be answered; else the status and
        the one-line reason to answer with."""
        hosts = [value for name, value in headers if name.lower() == b"host"]
        if len(hosts) != 1:
            return 400, f"a request carries exactly one Host header field; this had {len(hosts)}"
        try:
            host = parse_host(hosts[0].decode("ascii"))
        except (UnicodeDecodeError, BadHost) as exc:
            reason = str(exc) if isinstance(exc, BadHost) else "a Host that is not ASCII"
            return 400, f"the Host header field is not host[:port]: {reason}"
        if not self.accepts(host):
            return 421, (
                "this server answers loopback names and addresses (localhost, 127.0.0.1, [::1])"
                f" and the names in {ALLOWED_HOSTS_VARIABLE} only"
            )
        return None


class LoopbackHostMiddleware:
    """Refuse, before any route runs, an HTTP request whose ``Host`` the rule does not accept:
    400 or 421, ``text/plain``, no data, the connection closed."""

    def __init__(self, app: ASGIApp, rule: HostRule | None = None) -> None:
        self.app = app
        self.rule = rule or HostRule()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.rule.refusal(scope["headers"]) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, reason = refusal
        response = PlainTextResponse(
            f"{status}: {reason}\n", status, headers={"connection": "close"}
        )
        await response(scope, receive, send)
