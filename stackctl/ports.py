"""Every port the local stack listens on, from env vars with the documented defaults; whether a
port is free, and who holds it when it is not."""

from __future__ import annotations

import json
import os
import random
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from servicekit.catalog import GATEWAY, INVENTORY, NOTIFICATION, ORDER, ServiceSpec

ROOT = Path(__file__).resolve().parent.parent  # the checkout
# Each service's replicas' ports, by service name (`make up REPLICAS=N`).
ReplicaPorts = dict[str, tuple[int, ...]]


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
    trace_browser: int = 16680
    opensearch: int = 9200  # STORAGE=opensearch only
    opensearch_transport: int = 9300
    postgres: int = 5432  # DB=postgres only
    # Jaeger's own query HTTP; clients use jaeger_query, its Host-checking front (front.py)
    jaeger_query_internal: int = 16687

    @staticmethod
    def variable(name: str) -> str:
        """The environment variable that moves field ``name``: ``gateway`` -> ``GATEWAY_PORT``."""
        return f"{name.upper()}_PORT"

    def of(self, spec: ServiceSpec) -> int:
        """The port of a service of the catalog."""
        return int(getattr(self, spec.env_prefix.lower()))

    def url(self, name: str, path: str = "") -> str:
        """``http://127.0.0.1:<port><path>`` for the port field ``name`` (``"gateway"``...)."""
        return f"http://127.0.0.1:{getattr(self, name)}{path}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Ports:
        """Defaults overridden by ``<NAME>_PORT`` (e.g. ``GATEWAY_PORT``, ``JAEGER_QUERY_PORT``)."""
        env = dict(os.environ) if env is None else env
        values: dict[str, int] = {}
        for field in fields(cls):
            raw = env.get(cls.variable(field.name))
            if raw:
                try:
                    values[field.name] = int(raw)
                except ValueError:
                    raise ValueError(f"{cls.variable(field.name)}={raw!r} is not a port") from None
        return cls(**values)

    def save(self, path: Path, replicas: ReplicaPorts | None = None) -> None:
        """Record these ports (JSON), for the commands that follow ``up``; with ``replicas``,
        each replica's port under ``"replicas"`` (``{"api-gateway": [port, ...], ...}``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        record: dict[str, object] = dict(asdict(self))
        if replicas:
            record["replicas"] = {name: list(ports) for name, ports in replicas.items()}
        path.write_text(json.dumps(record, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Ports | None:
        """The ports recorded at ``path``, or None when there is no readable record."""
        try:
            record = json.loads(path.read_text())
            record.pop("replicas", None)
            return cls(**record)
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    @staticmethod
    def load_replicas(path: Path) -> ReplicaPorts | None:
        """The replicas' ports recorded at ``path``; None when none are (one process each)."""
        try:
            replicas = json.loads(path.read_text())["replicas"]
            return {name: tuple(int(port) for port in ports) for name, ports in replicas.items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    @classmethod
    def free(cls) -> Ports:
        """Distinct free loopback ports, for tests that must not clash with a running stack."""
        return cls(*free_ports(len(fields(cls))))


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports: for a test's stack, or the replicas of
    ``make up REPLICAS=N``.

    They are drawn below the kernel's ephemeral range (``ip_local_port_range``), where the
    source ports of outgoing connections come from: a port handed out here stays free until
    its process binds it, rather than being taken by some client's connection meanwhile.
    """
    low = _ephemeral_start()
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", random.randrange(low - 12_000, low)))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class PortUrls:
    """The loopback URLs of a stack's ports, for anything that holds ``ports`` (the local
    stack, the compose tier's project)."""

    ports: Ports

    @property
    def gateway_url(self) -> str:
        return self.ports.url("gateway")

    @property
    def jaeger_url(self) -> str:
        return self.ports.url("jaeger_query")

    @property
    def prometheus_url(self) -> str:
        return self.ports.url("prometheus")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def run_dir(env: Mapping[str, str]) -> Path:
    """Where ``make up`` keeps pid files, logs and the record of its ports: ``RUN_DIR``, by
    default run/ in the checkout."""
    return Path(env.get("RUN_DIR", ROOT / "run")).resolve()


def record_of(run: Path) -> Path:
    """The record of the ports the running stack's ``up`` used (removed by ``down``)."""
    return run / "ports.json"


def _recorded(env: Mapping[str, str] | None) -> Ports | None:
    return Ports.load(record_of(run_dir(os.environ if env is None else env)))


def local_jaeger(env: Mapping[str, str] | None = None) -> str | None:
    """The Jaeger query API of the local stack (``make up``), from the ports its ``up``
    recorded; None when there is no record (no stack, or ``make down`` ran)."""
    recorded = _recorded(env)
    return None if recorded is None else f"http://127.0.0.1:{recorded.jaeger_query}"


def running_jaeger(env: Mapping[str, str] | None = None) -> str | None:
    """:func:`local_jaeger` while something listens on its port (a record a crashed stack
    left behind does not count); else None."""
    recorded = _recorded(env)
    if recorded is None or not port_in_use(recorded.jaeger_query):
        return None
    return f"http://127.0.0.1:{recorded.jaeger_query}"


def local_browser(jaeger_url: str, env: Mapping[str, str] | None = None) -> str | None:
    """The trace browser's URL of the local stack (``make up``) whose Jaeger query API is at
    ``jaeger_url``, from the ports its ``up`` recorded; None when no such stack runs."""
    address = urlsplit(jaeger_url)
    recorded = _recorded(env)
    if recorded is None or address.hostname not in ("localhost", "127.0.0.1", "::1"):
        return None
    if address.port != recorded.jaeger_query:
        return None
    return f"http://127.0.0.1:{recorded.trace_browser}"


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when binding ``host:port`` fails: something listens there (or on all addresses)."""
    with socket.socket() as sock:
        # As servers bind: a port with connections in TIME_WAIT only is free for them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_owner(port: int) -> str | None:
    """``pid 1234 (python3 -m http.server 8080)`` for the process listening on TCP ``port``,
    from /proc (Linux); None when it cannot be read (another user's process, another OS)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            # local address "0100007F:1F90", state 0A = LISTEN, inode in column 10
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                command = " ".join(a.decode(errors="replace") for a in argv if a)
                return f"pid {proc.name} ({command[:120]})"
        except OSError:
            continue
    return None
