"""The loopback-Host rule (servicekit/loopback_host.py), the absolute-form authority the bounded
protocol puts in place of Host (servicekit/server.py), and the rule as middleware."""

from __future__ import annotations

import ipaddress

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from servicekit.loopback_host import (
    BadHost,
    HostRule,
    LoopbackHostMiddleware,
    parse_host,
    whatwg_ipv4,
)
from servicekit.server import absolute_form_authority

LOOPBACK = [
    "localhost",
    "localhost:16680",
    "LOCALHOST:16680",
    "localhost.",
    "localhost.:16680",
    "trace.localhost:16680",  # RFC 6761, 6.3
    "127.0.0.1",
    "127.0.0.1:16680",
    "127.0.0.1.:16680",
    "127.1.2.3:80",
    "127.1",
    "2130706433",  # 127.0.0.1 as one number
    "2130706433:16680",
    "0x7f.1",
    "0X7F.0.0.1",
    "0x7f000001",
    "0177.0.0.1",
    "0177.1:16680",
    "[::1]",
    "[::1]:16680",
    "[0:0:0:0:0:0:0:1]:16680",
    "[::ffff:127.0.0.1]:16680",
    "[::FFFF:7F00:1]",
    " 127.0.0.1:16680 ",  # field values are trimmed (RFC 9110, 5.5)
    "localhost:",  # an empty port is allowed by RFC 3986's grammar
]
FOREIGN = [
    "rebind.attacker.example",
    "rebind.attacker.example:16680",
    "localhost.attacker.example:16680",
    "127.0.0.1.attacker.example",
    "127.0.0.1.nip.io:16680",
    "attacker-localhost",
    "localhostx",
    "10.0.0.1:16680",
    "0.0.0.0:16680",
    "0",  # 0.0.0.0 for a browser
    "167772161",  # 10.0.0.1 as one number
    "0x0a.1",
    "[::]:16680",
    "[2001:db8::1]",
    "[::ffff:10.0.0.1]",
    "xn--lcalhost-5ya",
    "%6cocalhost",  # percent-encoded: not the name localhost
]
MALFORMED = [
    "",
    ":16680",
    "user@127.0.0.1",
    "user:pass@localhost:16680",
    "127.0.0.1:65536",
    "127.0.0.1:99999999",
    "127.0.0.1:8o",
    "127.0.0.1:16680:16680",
    "::1",  # an IPv6 address without brackets
    "[::1",
    "[::1]x",
    "[::1]:",  # valid: empty port (checked below it is accepted, not here)
    "[::1%lo]:16680",
    "[::1%25lo]",
    "[127.0.0.1]",
    "127.0.0.1/x",
    "127.0.0.1 127.0.0.1",
    "127.0.0.1\x00",
    "1.2.3.4.5",
    "127.0.0.256",
    "0x7g.1",
    "08.1.1.1",  # 8 is no octal digit
    "4294967296",  # past 255.255.255.255
    "127.16777216",
]


@pytest.mark.parametrize("value", LOOPBACK)
def test_loopback_names_and_addresses_are_answered(value: str) -> None:
    assert HostRule().refusal([(b"host", value.encode())]) is None


@pytest.mark.parametrize("value", FOREIGN)
def test_other_names_and_addresses_are_misdirected(value: str) -> None:
    refusal = HostRule().refusal([(b"host", value.encode())])
    assert refusal is not None and refusal[0] == 421


@pytest.mark.parametrize("value", [v for v in MALFORMED if v != "[::1]:"])
def test_a_host_that_is_not_host_port_is_a_bad_request(value: str) -> None:
    refusal = HostRule().refusal([(b"host", value.encode())])
    assert refusal is not None and refusal[0] == 400, refusal


def test_an_empty_port_after_brackets_is_a_port() -> None:
    assert HostRule().refusal([(b"host", b"[::1]:")]) is None


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"host", b"127.0.0.1"), (b"host", b"127.0.0.1")],
        [(b"host", b"127.0.0.1"), (b"Host", b"rebind.attacker.example")],
        [(b"host", "lócalhost".encode())],
    ],
)
def test_absent_duplicated_or_non_ascii_host_is_a_bad_request(
    headers: list[tuple[bytes, bytes]],
) -> None:
    refusal = HostRule().refusal(headers)
    assert refusal is not None and refusal[0] == 400


def test_the_operator_allows_names_and_addresses_after_the_same_normalisation() -> None:
    rule = HostRule.allowing(["Traces.Example.", "192.168.1.5:80", "[2001:db8::1]", " "])
    for value in ("traces.example", "TRACES.EXAMPLE:16680", "traces.example.", "3232235781"):
        assert rule.refusal([(b"host", value.encode())]) is None, value
    assert rule.refusal([(b"host", b"[2001:db8::1]:16680")]) is None
    for value in ("x.traces.example", "traces.example.attacker.example", "192.168.1.6"):
        refusal = rule.refusal([(b"host", value.encode())])
        assert refusal is not None and refusal[0] == 421, value
    with pytest.raises(BadHost):
        HostRule.allowing(["user@traces.example"])


def test_the_allowed_names_come_from_the_environment() -> None:
    rule = HostRule.from_env({"LOOPBACK_ALLOWED_HOSTS": "a.example, b.example:8080"})
    assert rule.allowed_names == {"a.example", "b.example"}
    assert HostRule.from_env({}).allowed_names == frozenset()


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("0x", "0.0.0.0"),
        ("192.168.257", "192.168.1.1"),
        ("example.com", None),
        ("1.2.3.example", None),
    ],
)
def test_ipv4_is_read_as_a_browser_reads_it(host: str, address: str | None) -> None:
    expected = None if address is None else ipaddress.IPv4Address(address)
    assert whatwg_ipv4(host) == expected


def test_parse_host_normalises() -> None:
    assert parse_host("LocalHost.:80").name == "localhost"
    assert parse_host("[::1]:80").address == ipaddress.IPv6Address("::1")


@pytest.mark.parametrize(
    ("target", "authority"),
    [
        (b"/trace/1", None),
        (b"*", None),
        (b"http://rebind.attacker.example:16680/trace/1", b"rebind.attacker.example:16680"),
        (b"http://127.0.0.1:16680?x=1", b"127.0.0.1:16680"),
        (b"HTTP://user@127.0.0.1/", b"user@127.0.0.1"),
        (b"http://[::1]:16680/", b"[::1]:16680"),
        (b"rebind.attacker.example:443", b"rebind.attacker.example:443"),  # authority form
    ],
)
def test_an_absolute_form_target_names_the_authority(
    target: bytes, authority: bytes | None
) -> None:
    assert absolute_form_authority(target) == authority


def _app(rule: HostRule) -> Starlette:
    async def secret(_: object) -> PlainTextResponse:
        return PlainTextResponse("every trace")

    app = Starlette(routes=[Route("/", secret)])
    app.add_middleware(LoopbackHostMiddleware, rule=rule)
    return app


def test_the_middleware_refuses_with_no_data_and_closes() -> None:
    with TestClient(_app(HostRule()), base_url="http://127.0.0.1:16680") as client:
        assert client.get("/").text == "every trace"
        refused = client.get("/", headers={"Host": "rebind.attacker.example:16680"})
        assert refused.status_code == 421
        assert "every trace" not in refused.text
        assert refused.headers["content-type"].startswith("text/plain")
        assert refused.headers["connection"] == "close"
        assert client.get("/", headers={"Host": "user@127.0.0.1"}).status_code == 400
    allowed = HostRule.allowing(["traces.example"])
    with TestClient(_app(allowed), base_url="http://traces.example") as client:
        assert client.get("/").text == "every trace"
