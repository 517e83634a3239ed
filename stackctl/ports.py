"""Every port the local stack listens on, from env vars with the documented defaults."""

from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass, fields
from pathlib import Path

from servicekit.catalog import GATEWAY, INVENTORY, NOTIFICATION, ORDER, ServiceSpec


@dataclass(frozen=True)
class Ports:
    """Field ``x`` is overridden by ``X_PORT``; the services' fields are named by their
    catalog entries' environment prefixes (``GATEWAY_PORT`` ...)."""

    gateway: int = GATEWAY.default_port
    inventory: int = INVENTORY.default_port
    order: int = ORDER.default_port
    notification: int = NOTIFICATION.default_port
    otlp_grpc: int = 4317
    otlp_http: int = 4318
    collector_health: int = 13133
    collector_metrics: int = 8888
    spanmetrics: int = 8889
    jaeger_otlp: int = 4417
    jaeger_query: int = 16686
    jaeger_query_grpc: int = 16685
    jaeger_health: int = 13134
    jaeger_metrics: int = 8898
    prometheus: int = 9090
    opensearch: int = 9200  # STORAGE=opensearch only
    opensearch_transport: int = 9300

    def of(self, spec: ServiceSpec) -> int:
        """The port of a service of the catalog."""
        return int(getattr(self, spec.env_prefix.lower()))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Ports:
        """Defaults overridden by ``<NAME>_PORT`` (e.g. ``GATEWAY_PORT``, ``JAEGER_QUERY_PORT``)."""
        env = dict(os.environ) if env is None else env
        values: dict[str, int] = {}
        for field in fields(cls):
            raw = env.get(f"{field.name.upper()}_PORT")
            if raw:
                try:
                    values[field.name] = int(raw)
                except ValueError:
                    raise ValueError(f"{field.name.upper()}_PORT={raw!r} is not a port") from None
        return cls(**values)

    @classmethod
    def free(cls) -> Ports:
        """Distinct free loopback ports, for tests that must not clash with a running stack.

        They are drawn below the kernel's ephemeral range (``ip_local_port_range``), where the
        source ports of outgoing connections come from: a port handed out here stays free until
        its process binds it, rather than being taken by some client's connection meanwhile.
        """
        low = _ephemeral_start()
        sockets: list[socket.socket] = []
        try:
            while len(sockets) < len(fields(cls)):
                sock = socket.socket()
                try:
                    sock.bind(("127.0.0.1", random.randrange(low - 12_000, low)))
                except OSError:
                    sock.close()
                    continue
                sockets.append(sock)
            return cls(*(sock.getsockname()[1] for sock in sockets))
        finally:
            for sock in sockets:
                sock.close()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
