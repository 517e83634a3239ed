"""Jaeger does not trace its own queries to an OTLP endpoint of its choosing: by default Jaeger v2
exports them to localhost:4317, another stack's collector when this one runs on moved ports (or
a refusal per export, and a wait at every stop). Here the real Jaeger binary, started as
`make up` starts it, is pointed at a listener of the test's own through the standard variable
its tracer reads, queried, and stopped: nothing may dial the listener."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from stackctl.ports import Ports
from stackctl.stack import Stack


def test_jaeger_exports_no_spans_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    dialled: list[object] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, address = listener.accept()
            except TimeoutError:
                continue
            dialled.append(address)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
    stack = Stack(tmp_path / "run", tmp_path / "data", ports=Ports.free(), with_prometheus=False)
    jaeger = stack.process("jaeger")
    try:
        jaeger.start()
        jaeger.wait_healthy(time.monotonic() + 60)
        # Jaeger's own query port, under the base path its Host-checking front would use
        direct = stack.ports.url("jaeger_query_internal", stack.jaeger_base_path.rstrip("/"))
        with httpx.Client(base_url=direct, timeout=10) as client:
            for _ in range(5):  # queries a tracing Jaeger would record as spans
                assert client.get("/api/services").status_code == 200
                client.get("/api/v3/traces", params={"query.service_name": "x"})
    finally:
        jaeger.stop()  # a tracing Jaeger flushes its spans here, at the latest
        done.set()
        thread.join()
        listener.close()
    assert dialled == [], f"Jaeger dialled {endpoint} to export its own spans"
