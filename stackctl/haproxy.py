"""HAProxy in front of the replicas of each service (`make up REPLICAS=N`): Debian's haproxy,
one process, its config written to ``<run>/haproxy.cfg``.

Each service keeps its usual port (``GATEWAY_PORT`` ...): HAProxy listens there and balances
round-robin over the service's replicas, each on a port of its own. A replica is taken out once
``GET /readyz`` fails twice (checked every second) and back after one success. The services
call each other through these ports too, so a stopped replica of any service is routed around.

Retries: only ``conn-failure`` (no connection could be made: nothing was sent), each to another
replica (``option redispatch``). A request that reached a replica is never sent again by the
balancer: the replica may have acted on it (a POST that reserved stock); the client decides,
with ``Idempotency-Key``. ``option http-server-close`` gives every request a new connection to
its replica, so no request is ever written on an idle connection the replica is closing.

Headers pass through unchanged (``traceparent``, ``baggage``, ``Idempotency-Key``); HAProxy
adds none (no ``X-Forwarded-For``: the services trust no proxy by default, see
``TRUSTED_PROXIES``). Its log (``<run>/logs/haproxy.log``) has its own warnings (a replica
going down or up), never the requests: a request's path can hold an order id, which no log line
may. The errors it makes itself (502, 503, 504) are ``application/problem+json``, as the
services' are.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

USER = "haproxy"  # Debian's package creates it
# The services bound their own work (deadlines, Request-Timeout-Ms); the balancer must not cut
# a slow but live exchange first, so its idle timeouts are well above the saga's worst case.
EXCHANGE_TIMEOUT = "300s"
# Above the services' own head limits (16 KiB of header fields), so theirs answer (431), not
# HAProxy's 400.
BUFFER_BYTES = 65536


# The answers HAProxy makes itself, as RFC 9457 problems like the services' own (without a
# traceId: no service saw the request): status -> (reason phrase, detail).
PROBLEMS = {
    502: ("Bad Gateway", "The replica that took the request closed its connection unanswered."),
    503: ("Service Unavailable", "No replica of this service is ready; retry shortly."),
    504: ("Gateway Timeout", "The replica that took the request did not answer in time."),
}


def binary() -> Path:
    """Debian's ``/usr/sbin/haproxy`` (or the one on PATH); RuntimeError when missing."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if found is None:
        raise RuntimeError("no haproxy: run scripts/install_backends.sh --postgres")
    return Path(found)


def config_file(run_dir: Path) -> Path:
    return run_dir / "haproxy.cfg"


def stats_socket(run_dir: Path) -> Path:
    """Its runtime API, mode 0600: how `up` waits for every replica to be UP, and how a replica
    is drained before it is stopped."""
    return run_dir / "haproxy.sock"


def error_file(run_dir: Path, status: int) -> Path:
    return run_dir / "haproxy-errors" / f"{status}.http"


def write_error_files(run_dir: Path) -> None:
    """The raw responses of :data:`PROBLEMS` (HAProxy sends an ``errorfile`` as it is)."""
    for status, (reason, detail) in PROBLEMS.items():
        body = json.dumps(
            {"type": "about:blank", "title": reason, "status": status, "detail": detail}
        )
        retry = "Retry-After: 1\r\n" if status == 503 else ""
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/problem+json\r\n"
            f"Cache-Control: no-store\r\n{retry}Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        path = error_file(run_dir, status)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(head + body)


def render(run_dir: Path, services: Mapping[str, tuple[int, Sequence[int]]]) -> str:
    """The config: ``services`` maps each service name to (its usual port, its replicas'
    ports)."""
    drop_root: list[str] = []
    if os.geteuid() == 0:  # it needs no privilege once its ports are bound
        try:
            pwd.getpwnam(USER)
            drop_root = [f"    user {USER}", f"    group {USER}"]
        except KeyError:
            pass
    lines = [
        "global",
        f"    stats socket {stats_socket(run_dir)} mode 600 level admin",
        f"    tune.bufsize {BUFFER_BYTES}",
        "    maxconn 4096",
        *drop_root,
        "",
        "http-errors problems",
        *(f"    errorfile {status} {error_file(run_dir, status)}" for status in PROBLEMS),
        "",
        "defaults",
        "    mode http",
        "    errorfiles problems",
        "    option http-server-close",
        "    retries 3",
        "    retry-on conn-failure",
        "    option redispatch",
        "    timeout connect 2s",
        f"    timeout client {EXCHANGE_TIMEOUT}",
        f"    timeout server {EXCHANGE_TIMEOUT}",
        "    timeout http-request 30s",
        "    timeout http-keep-alive 10s",
        "    timeout queue 10s",
        "    timeout check 2s",
        "    option httpchk GET /readyz",
        "    http-check expect status 200",
        "    default-server check inter 1s fall 2 rise 1",
    ]
    for name, (port, replicas) in services.items():
        lines += ["", f"frontend {name}", f"    bind 127.0.0.1:{port}"]
        lines += [f"    default_backend {name}", "", f"backend {name}", "    balance roundrobin"]
        lines += [
            f"    server {name}-{k} 127.0.0.1:{replica}"
            for k, replica in enumerate(replicas, start=1)
        ]
    return "\n".join(lines) + "\n"


def write_config(run_dir: Path, services: Mapping[str, tuple[int, Sequence[int]]]) -> Path:
    path = config_file(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_error_files(run_dir)
    path.write_text(render(run_dir, services))
    return path


def command(run_dir: Path) -> list[str]:
    """Foreground (``-db``); the config is checked as it starts."""
    return [str(binary()), "-db", "-f", str(config_file(run_dir))]


def ask(run_dir: Path, command: str, timeout: float = 2.0) -> str:
    """One command of HAProxy's runtime API on its stats socket; "" when it does not answer."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(str(stats_socket(run_dir)))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return ""
    return b"".join(chunks).decode(errors="replace")


def server_stats(run_dir: Path) -> dict[str, dict[str, str]]:
    """Each replica's row of ``show stat`` (``status``: ``UP``, ``DOWN``, ``DRAIN``...;
    ``scur``: requests in progress on it), by its name; empty when HAProxy does not answer."""
    rows = ask(run_dir, "show stat").splitlines()
    if not rows or not rows[0].startswith("# "):
        return {}
    header = rows[0][2:].split(",")
    stats = {}
    for row in rows[1:]:
        values = dict(zip(header, row.split(","), strict=False))
        if values.get("svname") not in (None, "FRONTEND", "BACKEND"):
            stats[values["svname"]] = values
    return stats


def server_states(run_dir: Path) -> dict[str, str]:
    """Each replica's state as HAProxy sees it (``{"api-gateway-1": "UP", ...}``)."""
    return {name: row.get("status", "") for name, row in server_stats(run_dir).items()}


def set_state(run_dir: Path, service: str, replica: str, state: str) -> None:
    """``ready``, ``drain`` (no new requests; those in progress finish) or ``maint``."""
    ask(run_dir, f"set server {service}/{replica} state {state}")


def wait_all_up(run_dir: Path, replicas: Iterable[str], deadline: float) -> None:
    """Until HAProxy has every replica in (its checks run every second); RuntimeError naming
    those still out at ``deadline`` (``time.monotonic()``)."""
    while True:
        states = server_states(run_dir)
        out = sorted(name for name in replicas if states.get(name) != "UP")
        if not out:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"haproxy: not in the balancer in time: {', '.join(out)}")
        time.sleep(0.2)


@contextmanager
def drained(run_dir: Path, service: str, replica: str, timeout: float) -> Iterator[None]:
    """A replica out of the balancer for the block: no new request goes to it, and the block
    starts once those in progress have finished (or ``timeout`` seconds passed). After it the
    replica is marked ready again: HAProxy's checks take it back once it answers."""
    set_state(run_dir, service, replica, "drain")
    deadline = time.monotonic() + timeout
    while server_stats(run_dir).get(replica, {}).get("scur", "0") != "0":
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    try:
        yield
    finally:
        set_state(run_dir, service, replica, "ready")
