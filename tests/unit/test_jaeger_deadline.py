"""JaegerClient's total deadline (trace_analysis/sources/abortable.py): a trickled answer is cut
off at the deadline, not after the trickle; without a deadline (the command line) nothing
changes; the browser maps the cut-off to 504 and a full set of slots to 503."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from trace_analysis.browser_limits import JaegerSlots, jaeger_status
from trace_analysis.errors import AnalyzerError, JaegerDeadlineExceeded
from trace_analysis.sources.jaeger_api import JaegerClient

BODY = b'{"data":["api-gateway"]}'


class Trickle(socketserver.BaseRequestHandler):
    every_s = 0.2

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(BODY)
        )
        try:
            for byte in BODY:  # 25 bytes: 5 s in all
                time.sleep(self.every_s)
                self.request.sendall(bytes([byte]))
        except OSError:
            return


@pytest.fixture
def trickle() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_trickled_answer_is_cut_off_at_the_call_deadline(trickle: str) -> None:
    client = JaegerClient(trickle, timeout_s=5, call_deadline_s=0.5)
    started = time.monotonic()
    with pytest.raises(JaegerDeadlineExceeded, match=r"did not answer within 0\.5 s"):
        client.services()
    assert time.monotonic() - started < 4, "cut off before the trickle ended"


def test_a_passed_page_deadline_sends_no_query(trickle: str) -> None:
    client = JaegerClient(trickle, ends_at=time.monotonic() - 1)
    with pytest.raises(JaegerDeadlineExceeded, match="has passed"):
        client.services()
    assert client.queries == 0


def test_without_a_deadline_a_trickle_is_read_to_the_end(trickle: str) -> None:
    """The command line keeps reading a Jaeger that keeps sending (each read within timeout)."""
    assert JaegerClient(trickle, timeout_s=5).services() == ["api-gateway"]


def test_the_browser_answers_504_for_a_deadline_and_502_otherwise() -> None:
    assert jaeger_status(JaegerDeadlineExceeded("late")) == 504
    assert jaeger_status(AnalyzerError("HTTP 500")) == 502


def test_slots_are_taken_without_waiting_and_given_back() -> None:
    slots = JaegerSlots(2)
    assert slots.try_take() and slots.try_take()
    assert not slots.try_take()
    slots.give()
    assert slots.try_take()
