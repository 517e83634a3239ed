"""The README's Docker path on a real engine: `docker compose up -d --build --wait`, then every
promise of the README's Docker section and docs/compose.md checked against the running stack.

The tests run in file order on one stack (tests/compose/conftest.py); the ones that kill,
restart or remove containers come last, and the last one deletes the volumes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from servicekit.catalog import SERVICE_NAMES, SERVICES
from stackctl.traces import StoredTrace, wait_for_trace
from tests.compose.conftest import POSTGRES_PASSWORD, readme_command, readme_order
from tests.compose.engine import ROOT, ComposeProject, docker
from tests.compose_model import DATABASE, PUBLISHED, compose, environment, memory_bytes, services
from tests.order_trace_contract import ORDER_SPANS, check_order_trace, from_jaeger
from tests.reliability.support import Load, span_count_by_service, wait_for_traces, wait_until

# The first test also waits for the stack: stand-ins and a cold image build take minutes.
pytestmark = pytest.mark.timeout(1500)
EMAIL = re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
LOAD_RATE = 5.0  # orders per second while the collector is killed: short and bounded
LOAD_SECONDS = 12.0


@pytest.fixture(scope="module")
def first_order(stack: ComposeProject) -> dict:
    """The answer to the README's curl, run as written but for the gateway's port."""
    command = readme_command("curl ").replace("localhost:8080", f"localhost:{stack.ports.gateway}")
    out = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def per_order(stack: ComposeProject, first_order: dict) -> Counter[str]:
    """Spans per service in one order's whole trace: the README order's, once Jaeger has every
    operation of it and it holds to the order trace contract."""
    trace = wait_for_trace(
        stack.jaeger_url,
        first_order["traceId"],
        set(SERVICE_NAMES),
        frozenset(name for _, name in ORDER_SPANS),
        timeout=60,
    )
    item_count = sum(item["quantity"] for item in readme_order()["items"])
    # compose's services store in PostgreSQL
    check_order_trace(from_jaeger(trace), first_order["orderId"], item_count, "postgresql")
    return span_count_by_service(trace)


def whole_trace(stack: ComposeProject, trace_id: str, per_order: Counter[str]) -> StoredTrace:
    return wait_for_traces(stack.jaeger_url, [trace_id], per_order, timeout=60)[trace_id]


# --- the images -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_each_image_holds_and_runs_its_own_service(stack: ComposeProject, spec) -> None:
    """The built image has this service's package and no other's, and its running container
    is this service (a wrong package, or none, fails here: the container restarts or answers
    as another service)."""
    container = stack.inspect()[spec.name]
    assert container["State"]["Running"] and container["RestartCount"] == 0, container["State"]
    modules = [s.package for s in SERVICES]
    probe = (
        "import importlib.util, json; "
        f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {modules!r}}}))"
    )
    out = docker("run", "--rm", "--entrypoint", "python", container["Image"], "-c", probe).stdout
    assert json.loads(out) == {m: m == spec.package for m in modules}
    health = stack.compose(
        "exec", "-T", spec.name, "python", "-c",
        "import os, urllib.request; print(urllib.request.urlopen('http://127.0.0.1:'"
        f" + os.environ['{spec.port_variable}'] + '/healthz', timeout=5).read().decode())",
    )  # fmt: skip
    assert json.loads(health)["service"] == spec.name
    cmdline = docker("exec", container["Id"], "cat", "/proc/1/cmdline").stdout.split("\0")
    assert cmdline[:3] == ["python", "-m", spec.package], cmdline


# --- what the README and docs/compose.md show -----------------------------------------------


def test_readme_curl_answers_with_an_order_and_its_trace_id(first_order: dict) -> None:
    assert first_order["orderId"], first_order
    assert re.fullmatch(r"[0-9a-f]{32}", first_order["traceId"]), first_order


def test_whole_trace_in_the_published_jaeger_and_the_analyzer(
    stack: ComposeProject, first_order: dict, per_order: Counter[str]
) -> None:
    # per_order: the trace, four services, one root, the order trace contract
    assert set(per_order) == set(SERVICE_NAMES)
    # the README's link: the Jaeger UI serves the trace page
    page = httpx.get(f"{stack.jaeger_url}/trace/{first_order['traceId']}", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "analyze_traces.py"), "--jaeger-url", stack.jaeger_url,
         "--trace", first_order["traceId"], "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    spans = sum(ORDER_SPANS.values())
    assert (summary["traces"], summary["spans"], summary["incomplete"]) == (1, spans, 0), summary
    assert {s["service"] for s in summary["services"]} == set(SERVICE_NAMES)


def test_span_metrics_in_prometheus_and_the_jaeger_monitor_api(
    stack: ComposeProject, first_order: dict
) -> None:
    def in_prometheus() -> list:
        answer = httpx.get(
            f"{stack.prometheus_url}/api/v1/query",
            params={"query": 'traces_span_metrics_calls_total{service_name="api-gateway"}'},
            timeout=10,
        ).json()
        return answer["data"]["result"]

    # Prometheus scrapes every 15 s (prometheus/prometheus.yml)
    series = wait_until(in_prometheus, 90, "span metrics in Prometheus", interval=2)
    assert any(s["metric"].get("span_name") == "POST /api/orders" for s in series), series

    def in_monitor_api() -> list:
        answer = httpx.get(
            f"{stack.jaeger_url}/api/metrics/calls",
            params={"service": "api-gateway", "endTs": int(time.time() * 1000),
                    "lookback": 900_000, "step": 15_000, "ratePer": 60_000},
            timeout=10,
        )  # fmt: skip
        answer.raise_for_status()
        return [m for m in answer.json()["metrics"] if m["metricPoints"]]

    metrics = wait_until(in_monitor_api, 90, "calls in Jaeger's Monitor API", interval=2)
    assert metrics[0]["labels"], metrics


def test_logs_carry_trace_ids_and_no_email(stack: ComposeProject, first_order: dict) -> None:
    """Every service logs JSON lines with trace ids; no service logs an email address, and the
    customer's address (the README's order) is in no container's log at all."""
    gateway = stack.compose("logs", "--no-color", "--no-log-prefix", "api-gateway")
    assert first_order["traceId"] in gateway, "the order's trace id is in the gateway's log"
    for spec in SERVICES:
        lines = stack.compose("logs", "--no-color", "--no-log-prefix", spec.name).splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert records, f"{spec.name}: no JSON log line"
        assert any(re.fullmatch(r"[0-9a-f]{32}", str(r.get("trace_id"))) for r in records)
        assert not EMAIL.findall("\n".join(lines)), (spec.name, EMAIL.findall("\n".join(lines)))
    assert readme_order()["email"] not in stack.compose("logs", "--no-color")


def test_only_three_ports_are_published_on_loopback(stack: ComposeProject) -> None:
    published = {}
    for service, container in stack.inspect().items():
        for port, bindings in (container["NetworkSettings"]["Ports"] or {}).items():
            for binding in bindings or []:
                published.setdefault(service, set()).add(
                    (binding["HostIp"], int(binding["HostPort"]), int(port.split("/")[0]))
                )
    ports = stack.ports
    assert published == {
        "api-gateway": {("127.0.0.1", ports.gateway, ports.gateway)},
        "jaeger": {("127.0.0.1", ports.jaeger_query, PUBLISHED["jaeger"])},
        "prometheus": {("127.0.0.1", ports.prometheus, PUBLISHED["prometheus"])},
    }


def test_every_container_is_non_root_with_a_read_only_root(stack: ComposeProject) -> None:
    for service, container in stack.inspect().items():
        assert container["HostConfig"]["ReadonlyRootfs"], service
        pid = container["State"]["Pid"]
        uid = next(
            line.split()[1:]
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )
        assert "0" not in uid, f"{service} runs as uid {uid}"
    probe = subprocess.run(
        ["docker", "compose", "exec", "-T", "api-gateway", "python", "-c", "open('/app/x', 'w')"],
        cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr, probe.stderr


# --- the services' data: in PostgreSQL --------------------------------------------------------


def psql(stack: ComposeProject, query: str) -> list[list[str]]:
    """Rows of ``query`` run by psql in the postgres container (its socket: no password)."""
    env = environment(DATABASE)
    out = stack.compose(
        "exec", "-T", DATABASE, "psql", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"],
        "-v", "ON_ERROR_STOP=1", "-AtF", "\t", "-c", query,
    )  # fmt: skip
    return [line.split("\t") for line in out.splitlines() if line]


def test_the_order_is_stored_in_postgresql_one_schema_per_service(
    stack: ComposeProject, first_order: dict
) -> None:
    order_id = first_order["orderId"]
    assert re.fullmatch(r"[0-9a-f]{32}", order_id), order_id
    rows = psql(
        stack, f"SELECT order_id, status FROM order_service.orders WHERE order_id = '{order_id}'"
    )
    assert rows == [[order_id, first_order["status"]]], rows
    schemas = {row[0] for row in psql(stack, "SELECT schema_name FROM information_schema.schemata")}
    assert schemas >= {spec.package for spec in SERVICES}, schemas
    # the gateway's idempotency and the inventory's reservation are there too
    assert psql(stack, "SELECT count(*) FROM inventory_service.reservations") != [["0"]]


def test_the_database_spans_say_postgresql(
    stack: ComposeProject, first_order: dict, per_order: Counter[str]
) -> None:
    trace = whole_trace(stack, first_order["traceId"], per_order)
    database = environment(DATABASE)["POSTGRES_DB"]
    db_spans = []
    for span in trace.spans:
        tags = {tag["key"]: tag["value"] for tag in span.get("tags", [])}
        if "db.system.name" in tags:
            db_spans.append((trace.service_of(span), tags))
    assert {service for service, _ in db_spans} >= {"inventory-service", "order-service"}
    for service, tags in db_spans:
        assert tags["db.system.name"] == "postgresql", (service, tags)
        package = next(s.package for s in SERVICES if s.name == service)
        assert tags["db.namespace"] == f"{database}|{package}", (service, tags)
        assert tags.get("server.address") == DATABASE, (service, tags)
    assert POSTGRES_PASSWORD not in json.dumps(trace.raw), "the password is in a span"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_no_service_container_writes_a_sqlite_file(stack: ComposeProject, spec) -> None:
    """DATA_DIR (/data) is on the read-only root, with no volume: nothing is there, nor any
    SQLite file in the container's only writable place, /tmp."""
    probe = (
        "import pathlib, json; print(json.dumps(sorted(str(p) for p in "
        "[*pathlib.Path('/data').rglob('*'), *pathlib.Path('/tmp').rglob('*.db*')])))"
    )
    out = stack.compose("exec", "-T", spec.name, "python", "-c", probe)
    assert json.loads(out) == [], out
    assert environment(spec.name)["DATABASE_URL"].startswith("postgresql://")


def test_the_postgres_image_refuses_a_first_start_without_a_password(stack: ComposeProject) -> None:
    """The official image's rule, kept by compose's image: no password, no initdb (and so no
    database open to anyone who reaches its port)."""
    image = services()[DATABASE]["image"]
    result = docker(
        "run", "--rm", "--user", "postgres", "--read-only", "--tmpfs", "/var/lib/postgresql/data",
        "--tmpfs", "/var/run/postgresql", "-e", "POSTGRES_USER=orders", image,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout
    assert "POSTGRES_PASSWORD" in result.stderr, result.stderr


def test_the_database_password_is_in_no_log(stack: ComposeProject, first_order: dict) -> None:
    logs = stack.compose("logs", "--no-color")
    assert POSTGRES_PASSWORD not in logs
    assert "postgresql://" not in logs, "a database URL is logged"


# --- faults and lifecycle: these restart containers, the last one removes the volumes -------


def test_a_restarted_order_service_reads_the_order_back_from_postgresql(
    stack: ComposeProject, first_order: dict
) -> None:
    stack.compose("restart", "order-service", timeout=120)
    stack.compose("up", "-d", "--wait", timeout=300)
    order = httpx.get(f"{stack.gateway_url}/api/orders/{first_order['orderId']}", timeout=30)
    assert order.status_code == 200, order.text
    assert order.json()["orderId"] == first_order["orderId"]


def docker_size(text: str) -> float:
    """``docker stats`` sizes: ``708KiB``, ``85.3MiB``, ``1.2GiB``, ``0B`` (also kB, MB, GB)."""
    m = re.fullmatch(r"([\d.]+)\s*([kKMG]?)(i?)B", text.strip())
    assert m, f"unreadable docker stats size {text!r}"
    return float(m[1]) * (1024 if m[3] else 1000) ** " KMG".index(m[2].upper() or " ")


class MemorySampler:
    """``docker stats`` every ``interval`` s on a thread: the highest usage per container."""

    def __init__(self, stack: ComposeProject, interval: float = 1.0) -> None:
        self.stack, self.interval = stack, interval
        self.peak: dict[str, float] = {}
        self.limit: dict[str, float] = {}
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._sample()
        except Exception as exc:  # handed to the test on exit
            self.error = exc

    def _sample(self) -> None:
        while not self._stop.is_set():
            ids = self.stack.container_ids()
            out = docker("stats", "--no-stream", "--format", "{{json .}}", *ids.values(),
                         check=False, timeout=60).stdout  # fmt: skip
            names = {cid[:12]: service for service, cid in ids.items()}
            for line in out.splitlines():
                row = json.loads(line)
                service = names.get(row["ID"][:12])
                used, _, limit = row["MemUsage"].partition(" / ")
                if service and limit:
                    self.peak[service] = max(self.peak.get(service, 0), docker_size(used))
                    self.limit[service] = docker_size(limit)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=90)
        if self.error:
            raise self.error


def test_collector_kill_under_load_loses_no_acknowledged_span(
    stack: ComposeProject, per_order: Counter[str]
) -> None:
    """Orders flow while the collector is SIGKILLed and brought back: every order the gateway
    confirmed has its whole trace in Jaeger (spans in the collector's file_storage queue survive
    the kill; spans refused meanwhile are retried by the services). Memory stays under every
    container's limit throughout."""
    with MemorySampler(stack) as memory, Load(stack.gateway_url, rate=LOAD_RATE) as load:
        time.sleep(LOAD_SECONDS / 3)
        stack.compose("kill", "otel-collector")
        time.sleep(LOAD_SECONDS / 3)
        stack.compose("up", "-d", "--wait", "otel-collector", timeout=180)
        time.sleep(LOAD_SECONDS / 3)
    confirmed = [o.trace_id for o in load.outcomes if o.status == 201]
    assert len(confirmed) >= LOAD_RATE * LOAD_SECONDS / 2, Counter(o.status for o in load.outcomes)
    wait_for_traces(stack.jaeger_url, confirmed, per_order, timeout=120)
    containers = stack.inspect()
    assert set(memory.peak) == set(services()), memory.peak
    for service, peak in memory.peak.items():
        limit = memory_bytes(services()[service]["deploy"]["resources"]["limits"]["memory"])
        assert memory.limit[service] == limit, (service, memory.limit[service])
        assert peak < limit, f"{service}: {peak / 2**20:.0f} MiB of {limit / 2**20:.0f} MiB"
        assert not containers[service]["State"]["OOMKilled"], service


def test_jaeger_restart_keeps_the_traces(
    stack: ComposeProject, first_order: dict, per_order: Counter[str]
) -> None:
    stack.compose("restart", "jaeger", timeout=120)
    stack.compose("up", "-d", "--wait", timeout=300)
    whole_trace(stack, first_order["traceId"], per_order)


def test_down_then_up_keeps_the_data_and_down_v_removes_it(
    stack: ComposeProject, first_order: dict, per_order: Counter[str]
) -> None:
    volumes = stack.volumes()
    assert volumes == {f"{stack.name}_{name}" for name in compose()["volumes"]}, volumes
    stack.compose("down", timeout=180)
    assert stack.volumes() == volumes
    stack.compose("up", "-d", "--wait", timeout=300)
    whole_trace(stack, first_order["traceId"], per_order)
    # PostgreSQL's volume survived too: the order is still there
    order = httpx.get(f"{stack.gateway_url}/api/orders/{first_order['orderId']}", timeout=30)
    assert order.status_code == 200, order.text
    stack.compose("down", "-v", timeout=180)
    assert stack.volumes() == set()
    assert not stack.container_ids()
