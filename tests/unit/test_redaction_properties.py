"""Property-based: no part of any RFC 5322 address survives the redaction of a protected
attribute, whatever its local part (dot-atom of any atext, or a quoted string) and wherever
the address sits in the text.

The generator builds local parts from the whole of RFC 5322's ``atext`` (3.2.3) and quoted
strings (3.2.4); URL attributes carry the address as a client's URL library writes it
(percent-encoding what a URL must encode), the User-Agent as it is.
"""

from __future__ import annotations

import string
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from servicekit.redaction import CLIENT_SUPPLIED_ATTRIBUTES, REDACTED, redact, redact_server_span

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
atom = st.text(ATEXT, min_size=1, max_size=12)
dot_atom = st.lists(atom, min_size=1, max_size=4).map(".".join)
# qtext (printable ASCII but \\ and ") and quoted pairs, as RFC 5322 3.2.4 allows
qcontent = st.one_of(
    st.sampled_from([c for c in map(chr, range(32, 127)) if c not in '\\"']),
    st.sampled_from(string.printable[:94]).map(lambda c: "\\" + c),
)
quoted = st.lists(qcontent, min_size=1, max_size=12).map(lambda cs: '"' + "".join(cs) + '"')
label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
domain = st.lists(label, min_size=2, max_size=4).map(".".join)
address = st.tuples(st.one_of(dot_atom, quoted), domain).map(lambda p: f"{p[0]}@{p[1]}")
# What stands around an address: text without "@" or "%", ending and starting at a character
# no address may run into (space, parentheses, angle brackets, comma, semicolon, colon).
BREAKS = " ()<>,;:"
around = st.text(string.ascii_letters + BREAKS, max_size=20)
before = st.tuples(around, st.sampled_from(BREAKS)).map("".join)
after = st.tuples(st.sampled_from(BREAKS), around).map("".join)


def survives(address: str, redacted: str) -> bool:
    """Some part of the address next to the marker, or the address or its domain whole."""
    local, _, host = address.rpartition("@")
    head = redacted.partition(REDACTED)[0]
    return (
        REDACTED not in redacted
        or address in redacted
        or "@" + host in redacted
        or any(head.endswith(local[i:]) for i in range(len(local)))
    )


@settings(max_examples=400, deadline=None)
@given(address, before, after)
def test_no_part_of_an_address_survives_in_free_text(address: str, pre: str, post: str) -> None:
    text = pre + address + post
    assert (
        redact(text, CLIENT_SUPPLIED_ATTRIBUTES["user_agent.original"])
        == redact(pre, CLIENT_SUPPLIED_ATTRIBUTES["user_agent.original"]) + REDACTED + post
    )


@settings(max_examples=400, deadline=None)
@given(address, st.sampled_from(["url.path", "url.query"]), st.booleans())
def test_no_part_of_an_address_survives_in_a_url(address: str, key: str, raw_at: bool) -> None:
    # a URL library percent-encodes what a path segment or a query value cannot hold as is
    encoded = quote(address, safe="@" if raw_at else "")
    text = f"/api/orders/{encoded}" if key == "url.path" else f"email={encoded}&x=1"
    redacted = redact(text, CLIENT_SUPPLIED_ATTRIBUTES[key])
    assert not survives(encoded.replace("%40", "@"), redacted.replace("%40", "@"))
    assert redacted in (f"/api/orders/{REDACTED}", f"email={REDACTED}&x=1")


@settings(max_examples=100, deadline=None)
@given(address)
def test_every_protected_attribute_of_a_server_span_is_redacted(address: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    encoded = quote(address, safe="")
    values = {
        "url.path": f"/api/orders/{encoded}",
        "url.query": f"e={encoded}",
        "user_agent.original": f"bot (+mailto:{address})",
    }
    with provider.get_tracer("t").start_as_current_span("GET", attributes=values) as span:
        redact_server_span(span, {})
    [finished] = exporter.get_finished_spans()
    for key in CLIENT_SUPPLIED_ATTRIBUTES:
        value = str(finished.attributes[key])
        assert REDACTED in value and encoded not in value and address not in value, key
