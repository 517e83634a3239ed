"""A ``requests`` session whose calls can be cut off at a deadline, whatever the server sends.

``requests``' ``timeout`` bounds the connect and each socket read, not the whole answer: a
server that sends one byte every few seconds keeps a call alive for ever. Here every
connection the session opens is registered; :func:`within` starts a timer for the call, and
when it fires it shuts the call's sockets down (``shutdown(SHUT_RDWR)`` wakes a thread blocked
in ``recv``), so the call fails at once and its thread is free again.
"""

from __future__ import annotations

import socket
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class AbortableAdapter(HTTPAdapter):
    """An adapter that knows the connections it opened and can shut them all down."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.open_connections: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
        self.lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        register = self._register

        class Connection(HTTPConnection):
            def connect(self) -> None:
                super().connect()
                register(self)

        class SecureConnection(HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                register(self)

        secure = {"ConnectionCls": SecureConnection}
        pools = {
            "http": type("Pool", (HTTPConnectionPool,), {"ConnectionCls": Connection}),
            "https": type("SecurePool", (HTTPSConnectionPool,), secure),
        }
        self.poolmanager.pool_classes_by_scheme = pools  # type: ignore[attr-defined]

    def _register(self, connection: HTTPConnection) -> None:
        with self.lock:
            self.open_connections.add(connection)

    def abort(self) -> None:
        """Shut down every socket this adapter has open (from any thread)."""
        with self.lock:
            connections = list(self.open_connections)
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if sock is not None:
                with suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)


def abortable_session() -> requests.Session:
    """A session whose ``http://`` and ``https://`` calls go through one
    :class:`AbortableAdapter`."""
    session = requests.Session()
    adapter = AbortableAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class Cutoff:
    """Whether the deadline of a :func:`within` block fired."""

    fired = False


@contextmanager
def within(session: requests.Session, seconds: float) -> Iterator[Cutoff]:
    """Run the block with ``session``'s sockets shut down after ``seconds`` (a session made by
    :func:`abortable_session`; any other session's calls are not cut). A call under way then
    raises a ``requests`` exception; ``Cutoff.fired`` says it was the deadline."""
    cutoff = Cutoff()
    adapter = session.get_adapter("http://")

    def fire() -> None:
        cutoff.fired = True
        if isinstance(adapter, AbortableAdapter):
            adapter.abort()

    timer = threading.Timer(max(seconds, 0.0), fire)
    timer.daemon = True
    timer.start()
    try:
        yield cutoff
    finally:
        timer.cancel()
