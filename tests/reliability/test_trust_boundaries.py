"""Trust boundaries against the real stack: the server prices the order, every request is its own
trace, and client text stays out of telemetry.

One kind per section: prices come from the catalogue; pipelined requests start from an empty
context on every service; forwarded trace headers fit the next hop; a caller's tracestate is not
kept; forwarding headers count only from trusted proxies; duplicate JSON member names, HTTP/1.1
without exactly one Host and request content codings are refused as problem+json with the
traceId; email redaction covers RFC 5322 local parts; a stored order shows no internal ids.
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stackctl.orders import order_body
from stackctl.stack import Stack
from stackctl.traces import StoredTrace, fetch_trace
from tests.reliability.conftest import StackFactory
from tests.reliability.support import PROBLEM_JSON, SERVICES, wait_until
from tests.reliability.test_hostile_input import trace_states
from tests.reliability.test_public_edge import new_parent, raw, server_spans, status_of

TRACERESPONSE = re.compile(rb"traceresponse: 00-([0-9a-f]{32})-", re.IGNORECASE)


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:
    """Default settings: no trusted proxy."""
    return shared_stack


def trace_of(response: httpx.Response) -> str:
    return response.headers["traceresponse"].split("-")[1]


def wait_for_services(stack: Stack, trace_id: str, services: set[str]) -> StoredTrace:
    """The trace once each of ``services`` has its server span in it, after a moment for the
    rest of its spans."""

    def seen() -> StoredTrace | None:
        trace = fetch_trace(stack.jaeger_url, trace_id)
        if trace is None or not all(server_spans(trace, s) for s in services):
            return None
        return trace

    wait_until(seen, 30, f"trace {trace_id} from {sorted(services)} in Jaeger")
    time.sleep(0.5)
    return wait_until(seen, 5, f"trace {trace_id} again")


def port_of(stack: Stack, service: str) -> int:
    return int(stack.service_url(service).rsplit(":", 1)[1])


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status and body["traceId"] == trace_of(response)
    return body


# --- 1. the catalogue prices the order --------------------------------------------------------


@pytest.mark.parametrize(
    "client_price", [0, 0.004, 49.99, 1_000_000, None], ids=["0", "0.004", "49.99", "1e6", "none"]
)
def test_an_order_is_priced_from_the_catalogue_whatever_the_client_says(
    stack: Stack, client: httpx.Client, client_price: float | None
) -> None:
    item: dict[str, Any] = {"sku": "SKU123", "quantity": 5}
    if client_price is not None:
        item["price"] = client_price
    body = {**order_body(), "items": [item]}
    response = client.post("/api/orders", json=body)
    assert response.status_code == 201, response.text
    placed = response.json()
    assert placed["total"] == 250.0
    assert placed["items"] == [{"sku": "SKU123", "quantity": 5, "price": 50.0}]
    stored = client.get(f"/api/orders/{placed['orderId']}").json()
    assert stored["total"] == 250.0 and stored["items"] == placed["items"]
    trace = wait_for_services(stack, placed["traceId"], set(SERVICES))
    [gateway] = server_spans(trace, "api-gateway")
    tags = StoredTrace.tags(gateway)
    assert tags["order.price_source"] == "inventory-service"
    assert tags.get("order.client_prices_ignored") == (
        None if client_price is None else 1  # 49.99 differs too
    )
    [reserve] = server_spans(trace, "inventory-service")
    checked = [
        {f["key"]: f["value"] for f in log["fields"]}
        for log in reserve.get("logs", [])
        if any(f["value"] == "stock.checked" for f in log["fields"])
    ]
    assert [c["inventory.unit_price"] for c in checked] == ["50.00"]


def test_lines_and_total_agree_to_the_cent(client: httpx.Client) -> None:
    """12.50 x 3 + 50.00 x 7 = 387.50; the README's example stays 2 x 50.0 = 100.0. (SKU789 is
    not used: the concurrency tests sell all of it on this shared stack.)"""
    body = {
        **order_body(),
        "items": [
            {"sku": "SKU456", "quantity": 3, "price": 0.001},
            {"sku": "SKU123", "quantity": 7},
        ],
    }
    response = client.post("/api/orders", json=body)
    assert response.status_code == 201, response.text
    placed = response.json()
    assert [(i["sku"], i["price"]) for i in placed["items"]] == [("SKU456", 12.5), ("SKU123", 50.0)]
    assert placed["total"] == 387.5
    readme = client.post("/api/orders", json=order_body(quantity=2, price=50.0)).json()
    assert readme["total"] == 100.0 and readme["items"][0]["price"] == 50.0
    assert client.get("/api/inventory/SKU123").json()["price"] == 50.0


def test_a_stored_order_shows_no_internal_ids(client: httpx.Client) -> None:
    placed = client.post("/api/orders", json=order_body()).json()
    assert re.fullmatch(r"[0-9a-f]{32}", placed["orderId"])
    stored = client.get(f"/api/orders/{placed['orderId']}").json()
    assert set(stored) == {"orderId", "userId", "status", "total", "items", "createdAt"}


# --- 2. pipelined requests: each its own trace, on every service -----------------------------

PIPELINED_TARGETS = {
    "api-gateway": "/api/inventory/SKU123",
    "inventory-service": "/inventory/SKU123",
    "order-service": "/orders/no-such-order",
    "notification-service": "/no-such-route",
}


def pipelined(port: int, requests: list[bytes]) -> bytes:
    """Every request in one write on one connection; the answers until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"".join(requests))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def get_with_parent(path: str, trace_id: str, last: bool) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"traceparent: 00-{trace_id}-{secrets.token_hex(8)}-01\r\n"
        + ("Connection: close\r\n" if last else "")
        + "\r\n"
    ).encode()


@pytest.mark.parametrize("count", [2, 5])
@pytest.mark.parametrize("service", SERVICES)
def test_each_pipelined_request_continues_its_own_callers_trace(
    stack: Stack, service: str, count: int
) -> None:
    sent = [secrets.token_hex(16) for _ in range(count)]
    path = PIPELINED_TARGETS[service]
    answer = pipelined(
        port_of(stack, service),
        [get_with_parent(path, t, last=i == count - 1) for i, t in enumerate(sent)],
    )
    assert [m.decode() for m in TRACERESPONSE.findall(answer)] == sent


def test_a_pipelined_order_is_a_server_span_of_its_own_trace(stack: Stack) -> None:
    body = json.dumps(order_body()).encode()
    parents = [new_parent() for _ in range(3)]

    def post(traceparent: str, last: bool) -> bytes:
        return (
            f"POST /api/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\ntraceparent: {traceparent}\r\n"
            + ("Connection: close\r\n" if last else "")
            + "\r\n"
        ).encode() + body

    answer = pipelined(
        port_of(stack, "api-gateway"), [post(p, i == 2) for i, (p, _) in enumerate(parents)]
    )
    assert [m.decode() for m in TRACERESPONSE.findall(answer)] == [t for _, t in parents]
    for traceparent, trace_id in parents:
        trace = wait_for_services(stack, trace_id, set(SERVICES))
        [entry] = server_spans(trace, "api-gateway")
        assert StoredTrace.parent_id(entry) == traceparent.split("-")[2]


# --- 3. forwarded trace headers fit the next hop ---------------------------------------------


def amplifying_headers(tracestate_bytes: int, baggage: str) -> dict[str, str]:
    members, size, i = [], 0, 0
    while True:
        member = f"k{i:02d}" + "a" * 200 + "=" + "v" * 250
        if size + len(member) + 1 > tracestate_bytes:
            break
        members.append(member)
        size += len(member) + 1
        i += 1
    return {"traceparent": new_parent()[0], "tracestate": ",".join(members), "baggage": baggage}


@pytest.mark.parametrize(
    "baggage",
    [
        ",".join(f"b{j}=" + "!" * 1350 for j in range(3)),  # the reported case: ! becomes %21
        ",".join(f"b{j}=" + "/:" * 675 for j in range(3)),  # each re-encoded as %2F%3A
        "b=" + "!" * 4000,  # one member that no longer fits once re-encoded
        ",".join(f"k{j}=v" for j in range(180)),  # W3C's member count
    ],
    ids=["bang", "slash-colon", "one-big-member", "many-members"],
)
def test_trace_headers_the_gateway_accepts_never_make_a_hop_refuse(
    stack: Stack, client: httpx.Client, baggage: str
) -> None:
    headers = amplifying_headers(8192, baggage)
    response = client.post("/api/orders", json=order_body(), headers=headers)
    assert response.status_code == 201, response.text
    trace = wait_for_services(stack, response.json()["traceId"], set(SERVICES))
    statuses = [StoredTrace.tags(s).get("http.response.status_code") for s in trace.spans]
    assert 431 not in statuses


# --- 4. a caller's tracestate stays out of the telemetry -------------------------------------


@pytest.mark.parametrize(
    "tracestate",
    ["edge={email}", "vendor=abc,edge={email}", "a=1,b=2,c={email}", "congo=t61rcWkgMzE"],
)
def test_a_callers_tracestate_is_not_stored_or_forwarded(
    stack: Stack, client: httpx.Client, tracestate: str
) -> None:
    email = f"ts{secrets.token_hex(4)}@example.com"
    traceparent, trace_id = new_parent()
    response = client.post(
        "/api/orders",
        json=order_body(),
        headers={"traceparent": traceparent, "tracestate": tracestate.format(email=email)},
    )
    assert response.status_code == 201 and response.json()["traceId"] == trace_id
    trace = wait_for_services(stack, trace_id, set(SERVICES))
    assert len(trace.spans) >= 10
    assert not [s["operationName"] for s in trace.spans if email in json.dumps(s)]
    assert not [s for s in trace.spans if "w3c.tracestate" in StoredTrace.tags(s)]
    assert trace_states(stack, trace_id) == {""}


# --- 5. forwarding headers count only from trusted proxies -----------------------------------

FORWARDING = [
    {"X-Forwarded-For": "{email}"},
    {"X-Forwarded-For": "203.0.113.77"},
    {"Forwarded": 'for="[2001:db8::77]:4711"'},
    {"X-Real-IP": "203.0.113.78"},
]


def client_address(stack: Stack, response: httpx.Response) -> Any:
    trace = wait_for_services(stack, trace_of(response), {"api-gateway"})
    [span] = server_spans(trace, "api-gateway")
    return StoredTrace.tags(span).get("client.address")


@pytest.mark.parametrize("headers", FORWARDING, ids=lambda h: next(iter(h)))
def test_forwarding_headers_from_an_untrusted_peer_are_ignored(
    stack: Stack, client: httpx.Client, headers: dict[str, str]
) -> None:
    email = f"xff{secrets.token_hex(4)}@example.com"
    sent = {k: v.format(email=email) for k, v in headers.items()}
    response = client.get("/api/inventory/SKU123", headers=sent)
    assert response.status_code == 200
    assert client_address(stack, response) == "127.0.0.1"


@pytest.fixture(scope="module")
def proxied_stack(stacks: StackFactory) -> Iterator[Stack]:
    """A stack behind a trusted proxy on 127.0.0.1 (the tests play that proxy)."""
    with stacks.running("trusted-proxy", env={"TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"}) as stack:
        yield stack


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Forwarded-For": "198.51.100.7"}, "198.51.100.7"),
        # the client wrote the first hop itself: the rightmost untrusted one counts
        ({"X-Forwarded-For": "6.6.6.6, 198.51.100.7"}, "198.51.100.7"),
        ({"X-Forwarded-For": "198.51.100.7, 10.1.2.3"}, "198.51.100.7"),
        ({"Forwarded": 'for="[2001:db8::77]:4711";proto=https'}, "2001:db8::77"),
        ({"X-Real-IP": "203.0.113.78"}, "203.0.113.78"),
        ({"X-Forwarded-For": "xff@example.com"}, "127.0.0.1"),
        ({"Forwarded": "for=unknown"}, "127.0.0.1"),
    ],
)
def test_a_trusted_proxy_chain_is_read_as_rfc_7239_says(
    proxied_stack: Stack, headers: dict[str, str], expected: str
) -> None:
    response = httpx.get(f"{proxied_stack.gateway_url}/api/inventory/SKU123", headers=headers)
    assert response.status_code == 200
    assert client_address(proxied_stack, response) == expected


# --- 6. duplicate JSON member names -----------------------------------------------------------

ITEM = '{"sku":"SKU123","quantity":1%s}'
DUPLICATES = {
    "userId": '{"userId":1,"userId":2,"items":[%s],"email":"a@example.com"}' % (ITEM % ""),
    "items.0.price": '{"userId":1,"items":[%s],"email":"a@example.com"}'
    % (ITEM % ',"price":50.0,"price":0.0'),
    "items.1.sku": '{"userId":1,"items":[%s,{"sku":"SKU456","sku":"SKU789","quantity":1}],'
    '"email":"a@example.com"}' % (ITEM % ""),
    "email": '{"userId":1,"items":[%s],"email":"a@example.com","email":"b@example.com"}'
    % (ITEM % ""),
}


@pytest.mark.parametrize("member", DUPLICATES)
def test_a_duplicate_member_is_refused_and_named(client: httpx.Client, member: str) -> None:
    before = client.get("/api/inventory/SKU123").json()["available"]
    response = client.post(
        "/api/orders",
        content=DUPLICATES[member].encode(),
        headers={"Content-Type": "application/json"},
    )
    body = assert_problem(response, 400)
    assert body["member"] == member and member in body["detail"]
    assert client.get("/api/inventory/SKU123").json()["available"] == before


def test_an_internal_service_refuses_duplicates_too(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.service_url('inventory-service')}/inventory/reserve",
        content=b'{"reservationId":"dup-1","items":[{"sku":"SKU123","quantity":1,"quantity":9}]}',
        headers={"Content-Type": "application/json"},
    )
    assert assert_problem(response, 400)["member"] == "items.0.quantity"


# --- 7. HTTP/1.1 needs exactly one Host, on every service ------------------------------------


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    ("hosts", "version", "status"),
    [
        ([], "1.1", 400),
        (["a.example", "b.example"], "1.1", 400),
        (["127.0.0.1", "127.0.0.1"], "1.1", 400),
        ([], "1.0", 404),  # HTTP/1.0 needs no Host: answered as usual
        (["127.0.0.1"], "1.1", 404),
    ],
)
def test_http11_without_exactly_one_host_gets_400(
    stack: Stack, service: str, hosts: list[str], version: str, status: int
) -> None:
    head = f"GET /no-such-route HTTP/{version}\r\n" + "".join(f"Host: {h}\r\n" for h in hosts)
    answer = raw(port_of(stack, service), (head + "Connection: close\r\n\r\n").encode())
    assert status_of(answer) == status, answer[:300]
    head_text, _, body = answer.partition(b"\r\n\r\n")
    assert PROBLEM_JSON.encode() in head_text.lower()
    problem = json.loads(body)
    assert problem["traceId"] == TRACERESPONSE.search(head_text).group(1).decode()
    if status == 400:
        assert "Host" in problem["detail"] and b"connection: close" in head_text.lower()


# --- 8. request content codings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "gzipped"),
    [
        ("gzip", False),
        ("gzip", True),
        ("br", False),
        ("x-unknown", False),
        ("identity, gzip", True),
    ],
)
@pytest.mark.parametrize("service", ["api-gateway", "inventory-service"])
def test_a_content_coding_is_refused_with_415_and_accept_encoding(
    stack: Stack, service: str, coding: str, gzipped: bool
) -> None:
    path, body = (
        ("/api/orders", order_body())
        if service == "api-gateway"
        else ("/inventory/release", {"reservationId": "none"})
    )
    content = json.dumps(body).encode()
    response = httpx.post(
        stack.service_url(service) + path,
        content=gzip.compress(content) if gzipped else content,
        headers={"Content-Type": "application/json", "Content-Encoding": coding},
    )
    problem = assert_problem(response, 415)
    assert response.headers["accept-encoding"] == "identity"
    assert "gzip" in problem["detail"] or coding in problem["detail"]


def test_every_content_encoding_field_counts(client: httpx.Client) -> None:
    response = client.post(
        "/api/orders",
        content=gzip.compress(json.dumps(order_body()).encode()),
        headers=[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
            ("Content-Encoding", "identity"),
        ],
    )
    assert_problem(response, 415)


def test_identity_is_accepted(client: httpx.Client) -> None:
    response = client.post(
        "/api/orders",
        content=json.dumps(order_body()).encode(),
        headers={"Content-Type": "application/json", "Content-Encoding": "identity"},
    )
    assert response.status_code == 201, response.text


# --- 9. redaction covers RFC 5322 local parts -------------------------------------------------

LOCAL_PARTS = ["first!last", "o'hara", "a#b=c", "x/y", "{curly}", "a|b~c", "q?r^s`t", "s.$.&.*"]


@pytest.mark.parametrize("local", LOCAL_PARTS)
def test_no_part_of_an_address_reaches_jaeger(stack: Stack, local: str) -> None:
    """The tag at both ends of the local part: a match that starts late leaves the first."""
    tag = secrets.token_hex(4)
    address = f"{tag}{local}{tag}@example.com"
    sent = [
        httpx.get(
            f"{stack.gateway_url}/api/orders/none",
            params={"e": address},  # percent-encoded as a URL library does
            headers={"User-Agent": f"bot (+mailto:{address}) {address}.org"},
        ),
        httpx.get(
            f"{stack.gateway_url}/api/inventory/SKU123",
            headers={"User-Agent": f'x "{tag}{local} {tag}"@example.com'},
        ),
    ]
    if not set(local) & set("/?&=#"):  # URL delimiters: a client must percent-encode them
        sent.append(httpx.get(f"{stack.gateway_url}/api/inventory/SKU123?e={address}"))
    for response in sent:
        assert response.status_code in (200, 404), response.text
        trace = wait_for_services(stack, trace_of(response), {"api-gateway"})
        text = json.dumps(trace.raw)
        assert tag not in text and "example.com" not in text, text[:2000]
