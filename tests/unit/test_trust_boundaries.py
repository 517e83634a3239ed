"""Unit checks of the trust-boundary helpers; the real-stack tests are in
tests/reliability/test_trust_boundaries.py."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from opentelemetry import baggage
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import TracerProvider

from servicekit.forwarded import client_address, parse_trusted_proxies
from servicekit.http_client import Downstream
from servicekit.json_members import duplicate_member
from servicekit.money import to_cents
from servicekit.problems import ProblemError
from servicekit.settings import ServiceSettings

PROXIES = parse_trusted_proxies("10.0.0.0/8, ::1")


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # no trusted proxy: the peer, whatever the headers say
        ("203.0.113.9", [(b"x-forwarded-for", b"198.51.100.1")], "203.0.113.9"),
        ("203.0.113.9", [(b"forwarded", b"for=198.51.100.1")], "203.0.113.9"),
        # a trusted peer: the rightmost hop that is not a trusted proxy (RFC 7239 5.2)
        ("10.0.0.1", [(b"x-forwarded-for", b"198.51.100.1, 10.0.0.2")], "198.51.100.1"),
        ("10.0.0.1", [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.1")], "198.51.100.1"),
        (
            "10.0.0.1",
            [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"5.5.5.5")],
            "5.5.5.5",
        ),
        ("::1", [(b"forwarded", b'for="[2001:db8::17]:4711";proto=http')], "2001:db8::17"),
        ("10.0.0.1", [(b"forwarded", b"for=192.0.2.60:80, for=10.0.0.3")], "192.0.2.60"),
        ("10.0.0.1", [(b"x-real-ip", b"198.51.100.7")], "198.51.100.7"),
        # Forwarded is read first, then X-Forwarded-For, then X-Real-IP
        ("10.0.0.1", [(b"x-real-ip", b"1.1.1.1"), (b"forwarded", b"for=2.2.2.2")], "2.2.2.2"),
        # what is not an address ends the walk at the proxy that reported it
        ("10.0.0.1", [(b"x-forwarded-for", b"bob@example.com")], "10.0.0.1"),
        ("10.0.0.1", [(b"forwarded", b"for=unknown")], "10.0.0.1"),
        ("10.0.0.1", [(b"forwarded", b"for=_hidden, for=10.0.0.2")], "10.0.0.2"),
        ("10.0.0.1", [], "10.0.0.1"),
        # every hop a trusted proxy: the leftmost
        ("10.0.0.1", [(b"x-forwarded-for", b"10.1.1.1, 10.0.0.2")], "10.1.1.1"),
    ],
)
def test_client_address(peer: str, headers: list[tuple[bytes, bytes]], expected: str) -> None:
    assert client_address(peer, headers, PROXIES) == expected


def test_no_proxy_is_trusted_by_default() -> None:
    trusted = parse_trusted_proxies(ServiceSettings().trusted_proxies)
    assert trusted == ()
    assert client_address("127.0.0.1", [(b"x-forwarded-for", b"1.2.3.4")], trusted) == "127.0.0.1"


def test_a_bad_trusted_proxy_entry_is_named() -> None:
    with pytest.raises(ValueError, match=r"'proxy\.example'"):
        parse_trusted_proxies("10.0.0.1, proxy.example")


@pytest.mark.parametrize(
    ("body", "member"),
    [
        (b'{"userId":1,"userId":2}', "userId"),
        (b'{"items":[{"sku":"A","price":1,"price":0}]}', "items.0.price"),
        (b'{"a":{"b":{"c":[1,{"d":1,"d":1}]}}}', "a.b.c.1.d"),
        (b'{"a":1,"b":{"a":1}}', None),  # the same name in different objects is fine
        (b'[{"x":1},{"x":2}]', None),
        (b"not json", None),
    ],
)
def test_duplicate_member(body: bytes, member: str | None) -> None:
    assert duplicate_member(body) == member


def test_money_is_exact_to_the_cent() -> None:
    assert to_cents(Decimal("0.10") * 3) == Decimal("0.30")
    assert to_cents(Decimal("0.005")) == Decimal("0.01")
    assert float(to_cents(Decimal("50.00") * 5)) == 250.0


@pytest.mark.anyio
async def test_a_callee_that_refuses_the_forwarded_head_is_not_blamed() -> None:
    """A 431 from the next hop is answered as 431 to the client, naming no service."""
    transport = httpx.MockTransport(lambda request: httpx.Response(431))
    downstream = Downstream("inventory-service", "http://inventory", 5, TracerProvider(), transport)
    with pytest.raises(ProblemError) as raised:
        await downstream.request("POST", "/inventory/reserve", json={})
    await downstream.aclose()
    assert raised.value.status == 431 and "service" not in raised.value.extra
    assert "inventory-service" not in raised.value.detail


def test_what_the_gateway_forwards_fits_what_the_next_hop_accepts() -> None:
    """Forwarded trace headers: a traceparent, no tracestate (the edge keeps none), baggage
    at most the propagator's 8192 bytes however the caller's was encoded; with the other
    headers the gateway's client sends, well under every service's MAX_HEADER_BYTES."""
    ctx = baggage.set_baggage("b", "!" * 4000)
    for n in range(200):
        ctx = baggage.set_baggage(f"k{n}", "!" * 40, ctx)
    carrier: dict[str, str] = {}
    W3CBaggagePropagator().inject(carrier, ctx)
    forwarded = len(carrier["baggage"]) + len("baggage: \r\n") + len("traceparent: ") + 57
    assert len(carrier["baggage"]) <= 8192
    assert forwarded + 1024 < ServiceSettings().max_header_bytes
