"""A Jaeger that answers slowly, trickles or says nothing: the real trace browser still answers.

The hostile upstream is a socket server in this module, standing where Jaeger would (that is
the point: a Jaeger, proxy or half-broken node that misbehaves); the browser is the real one,
run as ``make up`` runs it, with short deadlines so that the checks are quick. Each page must
end in a 504 page within the deadline (not when the upstream stops), at most
``TRACE_BROWSER_MAX_JAEGER_CALLS`` pages wait for Jaeger (the rest get 503 and Retry-After at
once), the slots come back once the deadline has cut the calls off, and ``/healthz`` answers
under 45 hanging pages.
"""

from __future__ import annotations

import socketserver
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import record
from tests.reliability.support import percentile, trace_browser
from tests.standin import StandIn, serving

CALL_DEADLINE_S = 2.0
PAGE_DEADLINE_S = 3.0
SLOTS = 4
PAGES = 45
TRICKLE_EVERY_S = 0.5
# A trickled answer of 100,000 bytes lasts 14 hours: any page that ends came from a deadline.
BODY = b'{"data":["' + b"a" * 99_990 + b'"]}'
# Generous: the deadline plus start-up noise on a loaded 2-core machine, far below the trickle.
ANSWERED_WITHIN_S = PAGE_DEADLINE_S + 10


class Upstream(socketserver.BaseRequestHandler):
    """One connection of the stand-in Jaeger; ``server.mode`` says how it misbehaves."""

    server: StandIn

    def handle(self) -> None:
        self.request.settimeout(30)
        try:
            self.request.recv(65536)
            mode = self.server.mode
            if mode == "good":
                body = b'{"data":[]}'
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                self.request.sendall(head + b"Content-Length: 11\r\n\r\n" + body)
                return
            if mode == "silent":
                self.server.stop.wait(600)
                return
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(BODY)
            )
            # trickle-head: the status line and headers a byte at a time too
            data = head + BODY if mode == "trickle-head" else BODY
            if mode == "trickle":
                self.request.sendall(head)
            for byte in data:
                if self.server.stop.wait(TRICKLE_EVERY_S):
                    return
                self.request.sendall(bytes([byte]))
        except OSError:
            return


@pytest.fixture(scope="module")
def upstream() -> Iterator[StandIn]:
    with serving(StandIn(Upstream, "trickle")) as server:
        yield server


@pytest.fixture(scope="module")
def browser(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with trace_browser(
        upstream.url,
        tmp_path_factory.mktemp("browser-deadlines"),
        TRACE_BROWSER_JAEGER_TIMEOUT_SECONDS=str(CALL_DEADLINE_S),
        TRACE_BROWSER_PAGE_DEADLINE_SECONDS=str(PAGE_DEADLINE_S),
        TRACE_BROWSER_MAX_JAEGER_CALLS=str(SLOTS),
    ) as url:
        yield url


def timed_get(url: str, timeout: float = 120) -> tuple[int, str, float, httpx.Headers]:
    started = time.monotonic()
    response = httpx.get(url, timeout=timeout)
    return response.status_code, response.text, time.monotonic() - started, response.headers


@pytest.mark.parametrize("mode", ["trickle", "trickle-head", "silent"])
@pytest.mark.parametrize("path", ["/", "/trace/0123456789abcdef0123456789abcdef"])
def test_a_stalling_jaeger_ends_in_a_504_page_by_the_deadline(
    browser: str, upstream: StandIn, mode: str, path: str
) -> None:
    upstream.mode = mode
    status, text, took, _ = timed_get(browser + path)
    assert status == 504, text[:300]
    assert "did not answer within" in text or "deadline" in text
    assert took < ANSWERED_WITHIN_S, f"{took:.1f} s"
    record(f"browser under a {mode} Jaeger", path=path, status=status, answered_s=round(took, 2))


def test_pages_over_the_cap_get_503_at_once_and_healthz_answers(
    browser: str, upstream: StandIn, tmp_path: Path
) -> None:
    """45 pages at once against a trickling Jaeger: ``SLOTS`` wait (504 by the deadline), the
    others get 503 with Retry-After; /healthz answers meanwhile; then the slots are free."""
    upstream.mode = "trickle"
    with ThreadPoolExecutor(PAGES) as pool:
        pages = [pool.submit(timed_get, browser + "/") for _ in range(PAGES)]
        time.sleep(1.0)  # the pages are in: every slot is held by a trickle
        health = []
        for _ in range(20):
            started = time.monotonic()
            response = httpx.get(browser + "/healthz", timeout=30)
            health.append(time.monotonic() - started)
            assert response.status_code == 200 and response.text == "ok\n"
        results = [page.result(timeout=ANSWERED_WITHIN_S + 30) for page in pages]
    statuses = [status for status, *_ in results]
    # SLOTS pages at a time wait; a page that came in after a slot was freed may wait too
    assert set(statuses) <= {503, 504} and statuses.count(504) >= 1, statuses
    assert statuses.count(503) >= PAGES // 2, statuses
    busy = [(took, headers) for status, _, took, headers in results if status == 503]
    assert all(headers.get("retry-after", "").isdigit() for _, headers in busy)
    assert max(took for _, _, took, _ in results) < ANSWERED_WITHIN_S
    # the cut-off calls gave their slots and threads back: a healthy Jaeger is read again
    upstream.mode = "good"
    status, text, _, _ = timed_get(browser + "/")
    assert status == 200, text[:300]
    record(
        "browser with 45 pages on a trickling Jaeger",
        pages_503=statuses.count(503),
        pages_504=statuses.count(504),
        slowest_503_s=round(max(took for took, _ in busy), 3),
        slowest_page_s=round(max(took for _, _, took, _ in results), 2),
        healthz_p50_ms=round(percentile(health, 50) * 1000, 1),
        healthz_max_ms=round(max(health) * 1000, 1),
    )


def test_a_jaeger_that_answers_is_read_normally(browser: str, upstream: StandIn) -> None:
    """The deadlines do not cut a Jaeger that answers: the page is the usual one."""
    upstream.mode = "good"
    status, text, _, _ = timed_get(browser + "/")
    assert status == 200 and "Jaeger has no traces yet" in text
