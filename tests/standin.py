"""A stand-in upstream for tests of what sits in front of one (the trace browser before Jaeger,
a Host-checking front before a backend): a threaded TCP server on a free loopback port whose
handler reads ``server.mode`` and stops waiting once ``server.stop`` is set."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StandIn(socketserver.ThreadingTCPServer):
    """``handler`` answers each connection; ``mode`` says how (the test sets it)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[socketserver.BaseRequestHandler], mode: str) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.mode = mode
        self.stop = threading.Event()
        self.seen: list[tuple[bytes, bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serving(server: StandIn) -> Iterator[StandIn]:
    """Serve ``server`` on a thread; on exit, release its waiting handlers and close it."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
