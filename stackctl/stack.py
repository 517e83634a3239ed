"""The local stack: which processes, in which order, with which environment.

Start order follows the data: Jaeger first (it stores), then the collector (it forwards to
Jaeger), then the four services (they export to the collector), and the gateway last. Stop is the
reverse, so services flush their last spans into a collector that is still running.

``storage`` picks Jaeger's store: ``badger`` (embedded, jaeger/config.yaml) or ``opensearch``
(a local node started before Jaeger, jaeger/scale-out/config-opensearch.yaml: the scale-out
path's store, see stackctl/opensearch.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from servicekit.catalog import SERVICE_NAMES, SERVICES, ServiceSpec
from stackctl import opensearch
from stackctl.ports import Ports
from stackctl.process import ManagedProcess, StartError

ROOT = Path(__file__).resolve().parent.parent


# The shell's own values win over these.
LOCAL_DEFAULTS = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=local"}
STORAGES = ("badger", "opensearch")
BACKENDS = ("opensearch", "jaeger", "otel-collector")  # started first, in this order


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


def backend_binaries() -> tuple[Path, Path]:
    """(collector, jaeger) paths of the local stack."""
    paths = binary_paths()
    return paths["OTELCOL"], paths["JAEGER"]


@dataclass
class Stack:
    run_dir: Path
    data_dir: Path
    ports: Ports = field(default_factory=Ports)
    env: dict[str, str] = field(default_factory=dict)
    with_prometheus: bool = True
    storage: str = "badger"
    # The collector the services export to: the installer's binary name and its config. The
    # scale-out tests put the agent tier here (OTELCOL_SCALE_OUT, otel-collector/scale-out/
    # agent.yaml), which reads the same OTELCOL_* addresses.
    collector: tuple[str, Path] = ("OTELCOL", ROOT / "otel-collector" / "config.yaml")

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ValueError(f"STORAGE={self.storage!r}: expected one of {', '.join(STORAGES)}")
        self.run_dir = self.run_dir.resolve()
        self.data_dir = self.data_dir.resolve()
        paths = binary_paths()
        otelcol, jaeger = paths[self.collector[0]], paths["JAEGER"]
        for binary in (otelcol, jaeger):
            if not binary.exists():
                raise StartError(f"{binary} is missing: run scripts/install_backends.sh")
        self.opensearch_home = paths["OPENSEARCH_HOME"]
        self.processes = [self._jaeger(jaeger), self._collector(otelcol)]
        if self.storage == "opensearch":
            self.processes.insert(0, self._opensearch())
        prometheus = shutil.which("prometheus") if self.with_prometheus else None
        self.prometheus_missing = self.with_prometheus and prometheus is None
        if prometheus:
            self.processes.append(self._prometheus(prometheus))
        self.processes += [self._service(spec) for spec in SERVICES]

    # --- URLs -----------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def jaeger_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.jaeger_query}"

    @property
    def opensearch_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.opensearch}"

    @property
    def collector_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.collector_metrics}/metrics"

    @property
    def jaeger_metrics_url(self) -> str:
        """Jaeger's own metrics: its receiver's and its storage exporter's span counts."""
        return f"http://127.0.0.1:{self.ports.jaeger_metrics}/metrics"

    @property
    def spanmetrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.spanmetrics}/metrics"

    def spans_ended(self) -> dict[str, int]:
        """Spans each service process has finished since it started (its ``/healthz``)."""
        return {
            name: int(
                httpx.get(f"{self.service_url(name)}/healthz", timeout=5).json()["spans_ended"]
            )
            for name in SERVICE_NAMES
        }

    def service_url(self, name: str) -> str:
        return next(p.health_url.rsplit("/", 1)[0] for p in self.processes if p.name == name)

    def process(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.name == name)

    # --- process definitions ----------------------------------------------------------------

    def _managed(self, name: str, argv: list[str], health: str, env: dict[str, str]):
        return ManagedProcess(name, argv, health, self.run_dir, {**self.env, **env}, cwd=ROOT)

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
        return self._managed("opensearch", argv, health, env)

    def _jaeger(self, binary: Path) -> ManagedProcess:
        p = self.ports
        env = {
            "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{p.jaeger_otlp}",
            "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{p.jaeger_query}",
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
        return self._managed("jaeger", argv, f"http://127.0.0.1:{p.jaeger_health}/status", env)

    def _collector(self, binary: Path) -> ManagedProcess:
        p = self.ports
        env = {
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{p.otlp_grpc}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{p.otlp_http}",
            "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{p.collector_health}",
            "OTELCOL_JAEGER_ENDPOINT": f"127.0.0.1:{p.jaeger_otlp}",
            "OTELCOL_SPANMETRICS_ENDPOINT": f"127.0.0.1:{p.spanmetrics}",
            "OTELCOL_METRICS_HOST": "127.0.0.1",
            "OTELCOL_METRICS_PORT": str(p.collector_metrics),
            "OTELCOL_STORAGE_DIR": str(self.data_dir / "otel-collector"),
        }
        argv = [str(binary), "--config", str(self.collector[1])]
        health = f"http://127.0.0.1:{p.collector_health}/"
        return self._managed("otel-collector", argv, health, env)

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
        return self._managed("prometheus", argv, f"http://127.0.0.1:{p.prometheus}/-/ready", {})

    def _service(self, spec: ServiceSpec) -> ManagedProcess:
        p = self.ports
        port = p.of(spec)
        env = {
            **{k: v for k, v in LOCAL_DEFAULTS.items() if k not in os.environ},
            **self.env,
            "PYTHONUNBUFFERED": "1",
            "HOST": "127.0.0.1",
            "DATA_DIR": str(self.data_dir / spec.name),
            spec.port_variable: str(port),
            "INVENTORY_URL": f"http://127.0.0.1:{p.inventory}",
            "ORDER_URL": f"http://127.0.0.1:{p.order}",
            "NOTIFICATION_URL": f"http://127.0.0.1:{p.notification}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{p.otlp_grpc}",
        }
        health = f"http://127.0.0.1:{port}/readyz"
        return self._managed(spec.name, [sys.executable, "-m", spec.package], health, env)

    # --- lifecycle --------------------------------------------------------------------------

    def up(self, timeout: float = 60.0, report: Callable[[str], None] = print) -> None:
        """Start what is not running, in order; wait (bounded) for each stage to be healthy.

        Running twice starts nothing twice: a process alive from its pid file is kept.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.storage == "opensearch":
            try:
                opensearch.lay_out(self.opensearch_home, self.run_dir, self.data_dir / "opensearch")
            except RuntimeError as exc:
                raise StartError(str(exc)) from None
        backends = [p for p in self.processes if p.name in BACKENDS]
        stages = [
            *([p] for p in backends),
            [p for p in self.processes if p not in backends and p.name != "api-gateway"],
            [self.process("api-gateway")],
        ]
        for stage in stages:
            self._start_stage(stage, timeout, report)

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

    def down(self, report: Callable[[str], None] = print) -> None:
        for proc in reversed(self.processes):
            if proc.stop():
                report(f"{proc.name}: stopped")

    def status(self) -> list[tuple[str, int | None, bool, str]]:
        return [(p.name, p.pid(), p.healthy(), p.health_url) for p in self.processes]


def local_stack(env: dict[str, str] | None = None) -> Stack:
    """The stack `make up` runs: run/ for pid files and logs, data/ for state, env ports.

    ``STORAGE`` (badger) picks Jaeger's store; while OpenSearch runs from run/, the stack is
    the OpenSearch one whatever ``STORAGE`` says, so `make down` and `make status` find it.
    """
    env = dict(os.environ) if env is None else env
    run_dir = ROOT / "run"
    storage = env.get("STORAGE") or "badger"
    if ManagedProcess("opensearch", [], "", run_dir).pid() is not None:
        storage = "opensearch"
    return Stack(
        run_dir=run_dir,
        data_dir=Path(env.get("DATA_DIR", ROOT / "data")),
        ports=Ports.from_env(env),
        storage=storage,
    )
