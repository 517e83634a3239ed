"""The local stack: which processes, in which order, with which environment.

Start order follows the data: Jaeger first (it stores), then the collector (it forwards to
Jaeger), then the four services (they export to the collector), and the gateway last. Stop is the
reverse, so services flush their last spans into a collector that is still running.

Before anything starts, every port of every process to start is checked: one taken port stops
``up`` with the port, its owner and the ``*_PORT`` variable that moves it, and nothing started.
``up`` records the ports it used in ``run/ports.json``; ``local_stack`` reads them back while
that stack runs, so ``status``, ``logs``, ``demo*`` and ``down`` reach it without the variables.

``storage`` picks Jaeger's store: ``badger`` (embedded, jaeger/config.yaml) or ``opensearch``
(a local node started before Jaeger, jaeger/scale-out/config-opensearch.yaml: the scale-out
path's store, see stackctl/opensearch.py).

``database`` picks the services' store: ``sqlite`` (a file per service under ``DATA_DIR``) or
``postgres`` (a local server started first, stackctl/postgres.py; the services get
``DATABASE_URL``). ``replicas`` > 1 runs that many processes of each service, each on a free
port drawn at ``up`` and recorded, behind one HAProxy on the services' usual ports
(stackctl/haproxy.py); it needs a shared database, so it is refused with SQLite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_urlsafe

import httpx

from servicekit.catalog import SECRET_VARIABLES, SERVICE_NAMES, SERVICES, ServiceSpec
from servicekit.storage.base import DEFAULT_POOL_SIZE
from stackctl import haproxy, opensearch, postgres
from stackctl.admin_token import admin_token
from stackctl.ports import (
    ROOT,
    Ports,
    PortUrls,
    ReplicaPorts,
    free_ports,
    port_in_use,
    port_owner,
    record_of,
    run_dir,
)
from stackctl.process import ManagedProcess, StartError, live_pid

# The shell's own values win over these.
LOCAL_DEFAULTS = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=local"}
STORAGES = ("badger", "opensearch")
DATABASES = ("sqlite", "postgres")
# started first, in this order; the services' store before them, the balancer last
BACKENDS = ("postgres", "opensearch", "jaeger", "otel-collector", "haproxy")
REPLICA_PORT = "replica port"  # what a replica's port is in messages: drawn at up, no variable


def binary_paths() -> dict[str, Path]:
    """Every binary the installer builds (OTELCOL, JAEGER, OTELCOL_SCALE_OUT, OPENSEARCH_HOME),
    by its name.

    The installer alone knows the names (version and build-input hash); it is asked, not copied.
    """
    out = subprocess.run(
        [str(ROOT / "scripts" / "install_backends.sh"), "--paths"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {key: Path(value) for key, value in (line.split("=", 1) for line in out.splitlines())}


@dataclass
class Stack(PortUrls):
    run_dir: Path
    data_dir: Path
    ports: Ports = field(default_factory=Ports)
    env: dict[str, str] = field(default_factory=dict)
    with_prometheus: bool = True
    with_browser: bool = True  # the trace browser (trace_analysis.browser)
    moved: list[str] = field(default_factory=list)  # *_PORT values that a running stack ignores
    storage: str = "badger"
    # The collector the services export to: the installer's binary name and its config. The
    # scale-out tests put the agent tier here (OTELCOL_SCALE_OUT, otel-collector/scale-out/
    # agent.yaml), which reads the same OTELCOL_* addresses.
    collector: tuple[str, Path] = ("OTELCOL", ROOT / "otel-collector" / "config.yaml")
    database: str = "sqlite"
    replicas: int = 1
    # Each service's replicas' ports (replicas > 1): drawn free when not given.
    replica_ports: ReplicaPorts | None = None

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ValueError(f"STORAGE={self.storage!r}: expected one of {', '.join(STORAGES)}")
        if self.database not in DATABASES:
            raise ValueError(f"DB={self.database!r}: expected one of {', '.join(DATABASES)}")
        self._check_replicas()
        self.run_dir = self.run_dir.resolve()
        self.data_dir = self.data_dir.resolve()
        if self.replicas > 1 and not self.replica_ports:
            drawn = iter(free_ports(self.replicas * len(SERVICES)))
            self.replica_ports = {
                spec.name: tuple(next(drawn) for _ in range(self.replicas)) for spec in SERVICES
            }
        self.postgres_password = postgres.password(self.run_dir)
        # A missing binary is said by up(), so status and down work without them.
        paths = binary_paths()
        otelcol, jaeger = paths[self.collector[0]], paths["JAEGER"]
        self.opensearch_home = paths["OPENSEARCH_HOME"]
        self.jaeger_base_path = _jaeger_base_path(self.run_dir)
        self.processes = [self._jaeger(jaeger), self._collector(otelcol)]
        self.processes += [self._jaeger_front(), self._otlp_http_front()]
        if self.storage == "opensearch":
            self.processes.insert(0, self._opensearch())
        if self.database == "postgres":
            self.processes.insert(0, self._postgres())
        if self.replicas > 1:
            self.processes.append(self._haproxy())
        prometheus = shutil.which("prometheus") if self.with_prometheus else None
        self.prometheus_missing = self.with_prometheus and prometheus is None
        if prometheus:
            self.processes.append(self._prometheus(prometheus))
        self.replica_processes = {
            spec.name: [self._service(spec, k) for k in range(1, self.replicas + 1)]
            for spec in SERVICES
        }
        self.processes += [proc for procs in self.replica_processes.values() for proc in procs]
        if self.with_browser:
            self.processes.append(self._browser())

    # --- URLs -----------------------------------------------------------------------------

    @property
    def browser_url(self) -> str:
        """The trace browser: recent and flagged traces, and each trace at ``/trace/<id>``."""
        return f"http://127.0.0.1:{self.ports.trace_browser}"

    @property
    def otlp_http_socket(self) -> Path:
        """The collector's OTLP/HTTP receiver: a Unix socket, reached through its front."""
        return self.run_dir / "otlp-http.sock"

    @property
    def opensearch_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.opensearch}"

    @property
    def collector_metrics_url(self) -> str:
        return self.ports.url("collector_metrics", "/metrics")

    @property
    def jaeger_metrics_url(self) -> str:
        """Jaeger's own metrics: its receiver's and its storage exporter's span counts."""
        return self.ports.url("jaeger_metrics", "/metrics")

    @property
    def spanmetrics_url(self) -> str:
        return self.ports.url("spanmetrics", "/metrics")

    def spans_ended(self) -> dict[str, int]:
        """Spans each service has finished since its processes started (their ``/healthz``,
        added up over its replicas)."""
        return {
            name: sum(
                int(httpx.get(f"{url}/healthz", timeout=5).json()["spans_ended"])
                for url in self.replica_urls(name)
            )
            for name in SERVICE_NAMES
        }

    def service_url(self, name: str) -> str:
        """Where a service answers: its usual port (HAProxy's, with replicas)."""
        spec = next(spec for spec in SERVICES if spec.name == name)
        return f"http://127.0.0.1:{self.ports.of(spec)}"

    def replica_urls(self, name: str) -> list[str]:
        """Each process of a service, reached directly (one URL without replicas)."""
        return [p.health_url.rsplit("/", 1)[0] for p in self.replica_processes[name]]

    @property
    def database_url(self) -> str | None:
        """What the services get as ``DATABASE_URL`` (a secret): the local PostgreSQL's, or
        the one given; None for SQLite."""
        if self.database == "postgres":
            return postgres.database_url(self.postgres_password, self.ports.postgres)
        return {**os.environ, **self.env}.get("DATABASE_URL") or None

    def _check_replicas(self) -> None:
        """Several processes of a service need one store: separate SQLite files would each
        hold all the stock (and sell it again) and each a part of the orders."""
        if self.replicas < 1:
            raise ValueError(f"REPLICAS={self.replicas}: expected 1 or more")
        if self.replicas > 1 and self.database == "sqlite" and not self.database_url:
            raise ValueError(
                f"REPLICAS={self.replicas} needs a database the replicas share: with SQLite each "
                "replica would have its own file under DATA_DIR, so each would sell the whole "
                "stock again (oversold) and hold only the orders it took. Use "
                f"`make up DB=postgres REPLICAS={self.replicas}` (or set DATABASE_URL to a "
                "PostgreSQL)"
            )

    def process(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.name == name)

    @property
    def ports_file(self) -> Path:
        """Where ``up`` records the ports it used."""
        return record_of(self.run_dir)

    # --- process definitions ----------------------------------------------------------------

    def _managed(
        self,
        name: str,
        argv: list[str],
        health: str,
        env: dict[str, str],
        ports: Iterable[str],
        sockets: Iterable[Path] = (),
        secrets: tuple[str, ...] = (),
    ) -> ManagedProcess:
        """``ports``: the fields of :class:`Ports` the process listens on; ``secrets``: the
        secret variables it reads (any other is withheld from it)."""
        listens = {Ports.variable(port): getattr(self.ports, port) for port in ports}
        env = {**self.env, **env}
        return ManagedProcess(
            name,
            argv,
            health,
            self.run_dir,
            env,
            cwd=ROOT,
            ports=listens,
            sockets=list(sockets),
            secrets=secrets,
        )

    def _opensearch(self) -> ManagedProcess:
        p = self.ports
        argv, env = opensearch.command(
            self.opensearch_home,
            self.run_dir,
            self.data_dir / "opensearch",
            p.opensearch,
            p.opensearch_transport,
        )
        # 200 once the cluster is yellow or green (408 before), so Jaeger finds it writable.
        health = f"{self.opensearch_url}/_cluster/health?wait_for_status=yellow&timeout=0s"
        return self._managed(
            "opensearch", argv, health, env, ("opensearch", "opensearch_transport")
        )

    def _postgres(self) -> ManagedProcess:
        pool = int({**os.environ, **self.env}.get("DATABASE_POOL_SIZE") or DEFAULT_POOL_SIZE)
        connections = postgres.max_connections(self.replicas * len(SERVICES), pool)
        try:
            argv = postgres.command(
                self.run_dir, self.data_dir / "postgres", self.ports.postgres, connections
            )
        except RuntimeError:  # no binaries: said by up(), so status and down still work
            argv = ["/usr/lib/postgresql/bin/postgres"]
        health = f"tcp://127.0.0.1:{self.ports.postgres}"
        return self._managed("postgres", argv, health, {}, ["postgres"])

    def _haproxy(self) -> ManagedProcess:
        """One HAProxy on the services' usual ports, before their replicas."""
        try:
            argv = haproxy.command(self.run_dir)
        except RuntimeError:  # said by up()
            argv = ["/usr/sbin/haproxy"]
        health = f"tcp://127.0.0.1:{self.ports.gateway}"
        fronts = [spec.env_prefix.lower() for spec in SERVICES]
        return self._managed("haproxy", argv, health, {}, fronts)

    def _jaeger(self, binary: Path) -> ManagedProcess:
        p = self.ports
        env = {
            "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{p.jaeger_otlp}",
            # reached through its front only: the base path is the front's secret
            "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{p.jaeger_query_internal}",
            "JAEGER_QUERY_BASE_PATH": self.jaeger_base_path,
            "JAEGER_UI_ASSETS_PATH": str(ROOT / "jaeger" / "no-ui"),
            "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{p.jaeger_query_grpc}",
            "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{p.jaeger_health}",
            "JAEGER_METRICS_PORT": str(p.jaeger_metrics),
            "JAEGER_BADGER_DIR": str(self.data_dir / "jaeger"),
            "PROMETHEUS_URL": f"http://127.0.0.1:{p.prometheus}",
        }
        config = ROOT / "jaeger" / "config.yaml"
        if self.storage == "opensearch":
            config = ROOT / "jaeger" / "scale-out" / "config-opensearch.yaml"
            env |= {
                "JAEGER_METRICS_HOST": "127.0.0.1",
                "OPENSEARCH_URL": self.opensearch_url,
                "OPENSEARCH_REPLICAS": "0",  # one node: a replica would never be assigned
            }
        argv = [str(binary), "--config", str(config)]
        health = f"http://127.0.0.1:{p.jaeger_health}/status"
        listens = ["jaeger_query_internal", "jaeger_query_grpc", "jaeger_health", "jaeger_metrics"]
        if "otlp" in self.env.get("JAEGER_RECEIVERS", "[otlp]"):  # not when a Kafka topic feeds it
            listens.append("jaeger_otlp")
        return self._managed("jaeger", argv, health, env, listens)

    def _collector(self, binary: Path) -> ManagedProcess:
        p = self.ports
        env = {
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{p.otlp_grpc}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": str(self.otlp_http_socket),
            "OTELCOL_OTLP_HTTP_TRANSPORT": "unix",
            "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{p.collector_health}",
            "OTELCOL_JAEGER_ENDPOINT": f"127.0.0.1:{p.jaeger_otlp}",
            "OTELCOL_SPANMETRICS_ENDPOINT": f"127.0.0.1:{p.spanmetrics}",
            "OTELCOL_METRICS_HOST": "127.0.0.1",
            "OTELCOL_METRICS_PORT": str(p.collector_metrics),
            "OTELCOL_STORAGE_DIR": str(self.data_dir / "otel-collector"),
        }
        if "GOMEMLIMIT" not in {**os.environ, **self.env}:
            env["GOMEMLIMIT"] = gomemlimit(memory_limit_mib(self.collector[1], self.env))
        argv = [str(binary), "--config", str(self.collector[1])]
        health = f"http://127.0.0.1:{p.collector_health}/"
        listens = ("otlp_grpc", "collector_health", "collector_metrics", "spanmetrics")
        return self._managed(
            "otel-collector", argv, health, env, listens, sockets=[self.otlp_http_socket]
        )

    def _front(self, name: str, port: str, upstream: str, env: dict[str, str]) -> ManagedProcess:
        """A Host-checking front (stackctl/front.py) on the port field ``port``."""
        listen = f"127.0.0.1:{getattr(self.ports, port)}"
        env = {"FRONT_LISTEN": listen, "FRONT_UPSTREAM": upstream, **env}
        argv = [sys.executable, "-m", "stackctl.front"]
        return self._managed(name, argv, f"tcp://{listen}", env, [port])

    def _jaeger_front(self) -> ManagedProcess:
        """Jaeger's query API on JAEGER_QUERY_PORT, for a loopback Host only."""
        upstream = self.ports.url("jaeger_query_internal")
        prefix = {"FRONT_UPSTREAM_PATH_PREFIX": self.jaeger_base_path}
        return self._front("jaeger-query-front", "jaeger_query", upstream, prefix)

    def _otlp_http_front(self) -> ManagedProcess:
        """The collector's OTLP/HTTP receiver on OTLP_HTTP_PORT, for a loopback Host only."""
        return self._front("otlp-http-front", "otlp_http", f"unix:{self.otlp_http_socket}", {})

    def _prometheus(self, binary: str) -> ManagedProcess:
        """Debian's prometheus, scraping the collector's spanmetrics for Jaeger's Monitor tab."""
        p = self.ports
        config = self.run_dir / "prometheus.yml"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # The same jobs as prometheus/prometheus.yml (compose), with this stack's ports; JSON is
        # valid YAML.
        jobs = {"spanmetrics": p.spanmetrics, "otel-collector": p.collector_metrics}
        scrape = [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in jobs.items()
        ]
        config.write_text(
            json.dumps({"global": {"scrape_interval": "15s"}, "scrape_configs": scrape})
        )
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.data_dir / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{p.prometheus}",
        ]
        health = f"http://127.0.0.1:{p.prometheus}/-/ready"
        return self._managed("prometheus", argv, health, {}, ["prometheus"])

    def _service(self, spec: ServiceSpec, replica: int = 1) -> ManagedProcess:
        """Replica ``replica`` (1..) of a service: with replicas, named ``<service>-<k>``, on
        its drawn port, its own DATA_DIR; it calls the others through HAProxy."""
        p = self.ports
        name, port, ports = spec.name, p.of(spec), [spec.env_prefix.lower()]
        if self.replica_ports:
            name, port = f"{spec.name}-{replica}", self.replica_ports[spec.name][replica - 1]
            ports = []
        env = {
            **{k: v for k, v in LOCAL_DEFAULTS.items() if k not in os.environ},
            **self.env,
            "PYTHONUNBUFFERED": "1",
            "HOST": "127.0.0.1",
            "DATA_DIR": str(self.data_dir / name),
            spec.port_variable: str(port),
            "INVENTORY_URL": f"http://127.0.0.1:{p.inventory}",
            "ORDER_URL": f"http://127.0.0.1:{p.order}",
            "NOTIFICATION_URL": f"http://127.0.0.1:{p.notification}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{p.otlp_grpc}",
        }
        if self.database == "postgres":
            env["DATABASE_URL"] = self.database_url or ""
        health = f"http://127.0.0.1:{port}/readyz"
        argv = [sys.executable, "-m", spec.package]
        proc = self._managed(name, argv, health, env, ports, secrets=SECRET_VARIABLES)
        if not ports:
            proc.ports[REPLICA_PORT] = port
        return proc

    def _browser(self) -> ManagedProcess:
        """The trace browser, reading this stack's Jaeger; loopback only."""
        p = self.ports
        env = {
            "JAEGER_URL": self.jaeger_url,
            "TRACE_BROWSER_HOST": "127.0.0.1",
            "TRACE_BROWSER_PORT": str(p.trace_browser),
            # each span's log lines: the services' logs, which up writes here
            "TRACE_BROWSER_LOG_DIR": str(self.run_dir / "logs"),
        }
        argv = [sys.executable, "-m", "trace_analysis.browser"]
        health = f"{self.browser_url}/healthz"
        return self._managed("trace-browser", argv, health, env, ["trace_browser"])

    # --- lifecycle --------------------------------------------------------------------------

    def up(self, timeout: float = 60.0, report: Callable[[str], None] = print) -> None:
        """Start what is not running, in order; wait (bounded) for each stage to be healthy.

        Running twice starts nothing twice: a process alive from its pid file is kept. Raises
        :class:`StartError`, with nothing started, when a port or a binary is missing.
        """
        to_start = [p for p in self.processes if p.pid() is None]
        self.check_ports(to_start)
        for proc in to_start:
            if proc.argv[0].startswith("/") and not Path(proc.argv[0]).exists():
                raise StartError(f"{proc.argv[0]} is missing: run scripts/install_backends.sh")
        self.ports.save(self.ports_file, self.replica_ports)
        _keep_jaeger_base_path(self.run_dir, self.jaeger_base_path)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lay_out()
        except RuntimeError as exc:
            raise StartError(str(exc)) from None
        backends = sorted(
            (p for p in self.processes if p.name in BACKENDS), key=lambda p: BACKENDS.index(p.name)
        )
        gateways = self.replica_processes["api-gateway"]
        stages = [
            *([p] for p in backends),
            [p for p in self.processes if p not in backends and p not in gateways],
            gateways,
        ]
        for stage in stages:
            self._start_stage(stage, timeout, report)
            if stage[0].name == "postgres":
                try:
                    postgres.provision(
                        self.run_dir, self.ports.postgres, self.postgres_password, timeout
                    )
                except RuntimeError as exc:
                    raise StartError(str(exc)) from None
        if self.replicas > 1:
            expected = [proc.name for procs in self.replica_processes.values() for proc in procs]
            try:
                haproxy.wait_all_up(self.run_dir, expected, time.monotonic() + timeout)
            except RuntimeError as exc:
                raise StartError(f"{exc}; see {self.process('haproxy').log_file}") from None
            report(f"haproxy: all {len(expected)} replicas in the balancer")

    def _lay_out(self) -> None:
        """What the backends need on disk before they start. Raises RuntimeError."""
        if self.storage == "opensearch":
            opensearch.lay_out(self.opensearch_home, self.run_dir, self.data_dir / "opensearch")
        if self.database == "postgres":
            postgres.keep_password(self.run_dir, self.postgres_password)
            postgres.lay_out(self.run_dir, self.data_dir / "postgres")
        if self.replica_ports:
            haproxy.binary()
            haproxy.write_config(self.run_dir, self.balanced())

    @staticmethod
    def check_ports(processes: Iterable[ManagedProcess]) -> None:
        """Raise :class:`StartError` naming every taken port: its owner (pid and command, where
        /proc shows it) and the variable that moves it."""
        taken = [
            (proc, variable, port)
            for proc in processes
            for variable, port in proc.ports.items()
            if port_in_use(port)
        ]
        if not taken:
            return
        lines = [
            f"port {port} ({variable}, for {proc.name}) is in use by "
            f"{port_owner(port) or 'a process whose owner cannot be read (another user?)'}"
            for proc, variable, port in taken
        ]
        movable = [variable for _, variable, _ in taken if variable != REPLICA_PORT]
        hint = (
            f"move the port: `{movable[0]}=<free port> make up` (every *_PORT variable: "
            ".env.example)"
            if movable
            else "`make up` again: it draws other free ports for the replicas"
        )
        raise StartError(f"nothing was started: {'; '.join(lines)}. Stop that process, or {hint}")

    def _start_stage(self, stage: Iterable[ManagedProcess], timeout: float, report) -> None:
        started = []
        for proc in stage:
            if proc.pid() is not None:
                report(f"{proc.name}: already running (pid {proc.pid()})")
                continue
            proc.start()
            started.append(proc)
        deadline = time.monotonic() + timeout
        for proc in started:
            t0 = time.monotonic()
            proc.wait_healthy(deadline)
            report(f"{proc.name}: healthy in {time.monotonic() - t0:.1f} s  (log {proc.log_file})")

    def balanced(self) -> dict[str, tuple[int, tuple[int, ...]]]:
        """What HAProxy balances: each service's usual port and its replicas' ports."""
        replicas = self.replica_ports or {}
        return {spec.name: (self.ports.of(spec), replicas[spec.name]) for spec in SERVICES}

    def stop_replica(self, proc: ManagedProcess, timeout: float = 20.0) -> None:
        """Stop one replica without cutting a request off: HAProxy drains it first (no new
        request; those in progress finish, waited for up to ``timeout``), then SIGTERM. A bare
        SIGTERM can race the balancer: a request HAProxy has just written to the replica's
        socket but the replica has not read yet is dropped as it closes. It is then marked
        ready again, so HAProxy's checks take it back in once it is started."""
        service = next(name for name, procs in self.replica_processes.items() if proc in procs)
        with haproxy.drained(self.run_dir, service, proc.name, timeout):
            proc.stop()

    def restart_replica(self, proc: ManagedProcess, timeout: float = 60.0) -> None:
        """Drain, stop, start again, and wait until HAProxy has it back in: one step of a
        rolling restart, during which the service's other replicas take every request."""
        self.stop_replica(proc)
        proc.start()
        deadline = time.monotonic() + timeout
        proc.wait_healthy(deadline)
        try:
            haproxy.wait_all_up(self.run_dir, [proc.name], deadline)
        except RuntimeError as exc:
            raise StartError(str(exc)) from None

    def rolling_restart(self, report: Callable[[str], None] = print) -> None:
        """Every replica restarted, one at a time (:meth:`restart_replica`): new code or
        settings taken on with no request refused. Raises StartError without replicas."""
        if self.replicas < 2:
            raise StartError("a rolling restart needs replicas: make up DB=postgres REPLICAS=2")
        for procs in self.replica_processes.values():
            for proc in procs:
                t0 = time.monotonic()
                self.restart_replica(proc)
                report(f"{proc.name}: restarted in {time.monotonic() - t0:.1f} s")

    def balancer_states(self) -> dict[str, str]:
        """Each replica's state in HAProxy (``UP``, ``DOWN``...); empty without replicas."""
        return haproxy.server_states(self.run_dir) if self.replicas > 1 else {}

    def down(self, report: Callable[[str], None] = print) -> None:
        for proc in reversed(self.processes):
            if proc.stop():
                report(f"{proc.name}: stopped")
        self.ports_file.unlink(missing_ok=True)

    def status(self) -> list[tuple[str, int | None, str, str]]:
        """Each process: name, pid, state and health URL. The state is ``healthy`` only for a
        process this stack started (its pid file names a live process) that answers its health
        URL; ``down``; ``starting or unhealthy``; or ``down, another process answers`` when
        something else answers there (another checkout's stack on the default ports, say):
        never taken for ours."""
        rows = []
        balanced = self.balancer_states()
        for proc in self.processes:
            pid, answers = proc.pid(), proc.healthy()
            if pid is None:
                state = "down, another process answers" if answers else "down"
            else:
                state = "healthy" if answers else "starting or unhealthy"
            if proc.name in balanced:
                state += f", {balanced[proc.name]} in haproxy"
            rows.append((proc.name, pid, state, proc.health_url))
        return rows


def _jaeger_base_path(run: Path) -> str:
    """The base path of Jaeger's query API: the one ``up`` kept in ``run``, else a new random
    one (kept by :func:`_keep_jaeger_base_path` when ``up`` starts something)."""
    try:
        return (run / "jaeger-query-base-path").read_text().strip()
    except OSError:
        return "/" + token_urlsafe(24)


def _keep_jaeger_base_path(run: Path, path: str) -> None:
    """Keep it (mode 0600), so Jaeger and its front started later use the same."""
    file = run / "jaeger-query-base-path"
    if not file.exists():
        run.mkdir(parents=True, exist_ok=True)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(path + "\n")


def memory_limit_mib(config: Path, env: dict[str, str]) -> int:
    """The memory_limiter's ``limit_mib`` a collector config gets: ``OTELCOL_MEMORY_LIMIT_MIB``
    (``env``, then ours), else the config's own default. Raises ValueError for a config without
    that setting."""
    value = {**os.environ, **env}.get("OTELCOL_MEMORY_LIMIT_MIB")
    if value:
        return int(value)
    found = re.search(r"limit_mib: \$\{env:OTELCOL_MEMORY_LIMIT_MIB:-(\d+)\}", config.read_text())
    if found is None:
        raise ValueError(f"{config}: no limit_mib from OTELCOL_MEMORY_LIMIT_MIB")
    return int(found.group(1))


def gomemlimit(limit_mib: int) -> str:
    """The collector's ``GOMEMLIMIT`` for a memory_limiter ``limit_mib``: 80 % of it, as the
    processor's documentation advises, so the Go runtime collects harder before the limiter has
    to refuse, and the process stays under its container's limit."""
    return f"{limit_mib * 4 // 5}MiB"


def running(run_dir: Path) -> bool:
    """Whether any process started from ``run_dir`` still runs."""
    return any(live_pid(pid_file) for pid_file in run_dir.glob("*.pid"))


def local_stack(env: dict[str, str] | None = None, starts: bool = False) -> Stack:
    """The stack `make up` runs: ``RUN_DIR`` (default run/) for pid files, logs and the
    records below, ``DATA_DIR`` (default data/) for state. ``starts``: the command may start it
    (``up``, ``demo``...), so an admin token is made if none is known yet.

    Its ports: while a stack started from ``run_dir`` runs, the ones its ``up`` recorded
    (:attr:`Stack.moved` lists the ``*_PORT`` values given now that differ from them); else the
    ``*_PORT`` variables with their defaults. Its ``ADMIN_TOKEN``: see
    :func:`stackctl.admin_token.admin_token`.

    ``STORAGE`` (badger) picks Jaeger's store; while OpenSearch runs from ``run_dir``, the stack
    is the OpenSearch one whatever ``STORAGE`` says, so `make down` and `make status` find it.
    So do ``DB`` (sqlite; postgres while PostgreSQL runs from ``run_dir``) and ``REPLICAS`` (1;
    while the stack runs, the replicas its ``up`` recorded).
    """
    env = dict(os.environ) if env is None else env
    run = run_dir(env)
    asked = Ports.from_env(env)
    up = running(run)
    recorded = Ports.load(record_of(run)) if up else None
    ports = recorded or asked
    token = admin_token(run, env, create=starts and not up)
    storage = env.get("STORAGE") or "badger"
    if live_pid(run / "opensearch.pid"):
        storage = "opensearch"
    database = env.get("DB") or "sqlite"
    if live_pid(run / "postgres.pid"):
        database = "postgres"
    replica_ports = Ports.load_replicas(record_of(run)) if up else None
    try:
        asked_replicas = replicas = int(env.get("REPLICAS") or 1)
    except ValueError:
        raise ValueError(f"REPLICAS={env['REPLICAS']!r} is not a number") from None
    if up:
        replicas = len(next(iter(replica_ports.values()))) if replica_ports else 1
    stack = Stack(
        run_dir=run,
        data_dir=Path(env.get("DATA_DIR", ROOT / "data")),
        ports=ports,
        env={"ADMIN_TOKEN": token} if token else {},
        storage=storage,
        database=database,
        replicas=replicas,
        replica_ports=replica_ports,
    )
    stack.moved = [
        f"{Ports.variable(name)}={getattr(asked, name)} (it runs on {getattr(ports, name)})"
        for name in vars(ports)
        if Ports.variable(name) in env and getattr(asked, name) != getattr(ports, name)
    ]
    if "REPLICAS" in env and asked_replicas != replicas:
        stack.moved.append(f"REPLICAS={asked_replicas} (it runs {replicas} of each service)")
    return stack
