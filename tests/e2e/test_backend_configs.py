"""The collector and Jaeger configs, checked by the real binaries the local stack runs (found
with ``scripts/install_backends.sh --paths``): ``validate`` with the environment compose gives
each container and with the local defaults, and a short run of both on free loopback ports
(health endpoints as the compose healthchecks probe them, a span through the collector into
Jaeger, the Monitor tab asking Prometheus). A missing binary FAILS these tests, naming the
installer; it never skips them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackctl.stack import binary_paths
from tests.compose_model import (
    COLLECTOR_CONFIG,
    COLLECTOR_VERSION,
    JAEGER_CONFIG,
    JAEGER_MODULE_VERSION,
    JAEGER_VERSION,
    ROOT,
    container_env,
    healthcheck_url,
    require,
    resolve_otel_config,
    services,
)

# --- the real collector and Jaeger binaries ---------------------------------------------------


@cache
def _installer_paths() -> dict[str, Path]:
    try:
        return binary_paths()
    except (OSError, subprocess.CalledProcessError) as exc:
        stderr = getattr(exc, "stderr", "") or ""
        pytest.fail(f"scripts/install_backends.sh --paths failed: {exc}\n{stderr}", pytrace=False)


def backend_binary(key: str) -> Path:
    """The binary ``scripts/install_backends.sh --paths`` names (OTELCOL or JAEGER); never skips."""
    what = {"OTELCOL": "OpenTelemetry Collector", "JAEGER": "Jaeger"}[key]
    path = _installer_paths().get(key)
    if not path:
        pytest.fail(f"scripts/install_backends.sh --paths printed no {key}=...", pytrace=False)
    binary = path
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(
            f"the {what} binary {binary} is missing: build it with `scripts/install_backends.sh` "
            "(needs Go; binaries are cached per user, see OTEL_STACK_BIN_DIR)",
            pytrace=False,
        )
    return binary


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: no OTELCOL_* / JAEGER_* from the developer's shell leaks in."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    env.update(extra or {})
    return env


def run_validate(key: str, config: Path, env: dict[str, str], cwd: Path) -> None:
    result = subprocess.run(
        [str(backend_binary(key)), "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(env),
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, (
        f"{key} validate --config {config.name} failed:\n{result.stdout}{result.stderr}"
    )


@pytest.mark.parametrize("mode", ["compose-env", "local-defaults"])
def test_collector_binary_validates_the_shared_config(mode: str, tmp_path: Path) -> None:
    """``otelcol validate`` on otel-collector/config.yaml, as compose runs it and as `make up`."""
    require(COLLECTOR_CONFIG, "written with the local stack")
    env = container_env("otel-collector") if mode == "compose-env" else {}
    run_validate("OTELCOL", COLLECTOR_CONFIG, env, tmp_path)


@pytest.mark.parametrize("mode", ["compose-env", "local-defaults"])
def test_jaeger_binary_validates_its_config(mode: str, tmp_path: Path) -> None:
    """``jaeger validate`` (Jaeger v2 is an otelcol distribution) on jaeger/config.yaml."""
    require(JAEGER_CONFIG, "written with the local stack")
    env = container_env("jaeger") if mode == "compose-env" else {}
    run_validate("JAEGER", JAEGER_CONFIG, env, tmp_path)


@pytest.mark.parametrize("key", ["OTELCOL", "JAEGER"])
def test_validate_is_not_a_no_op(key: str, tmp_path: Path) -> None:
    """The same ``validate`` rejects a broken config, so the passes above mean something."""
    config = resolve_otel_config(COLLECTOR_CONFIG if key == "OTELCOL" else JAEGER_CONFIG, {})
    config["receivers"]["otlp"]["protocols"]["grpc"]["no_such_setting"] = 1
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [str(backend_binary(key)), "validate", "--config", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0 and "no_such_setting" in result.stdout + result.stderr


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def wait_for(
    what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, seconds=20.0
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{what} (exit code {proc.poll()}); log:\n{log.read_text()[-4000:]}")


class _FakePrometheus(BaseHTTPRequestHandler):
    """Answers Prometheus range queries with an empty matrix and records the PromQL."""

    queries: list[str]

    def _answer(self, params: dict[str, list[str]]) -> None:
        self.queries.extend(params.get("query", []))
        body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def do_GET(self) -> None:
        self._answer(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(urllib.parse.parse_qs(self.rfile.read(length).decode()))

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_prometheus() -> Iterator[tuple[str, list[str]]]:
    handler = type("Handler", (_FakePrometheus,), {"queries": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.queries
    server.shutdown()
    server.server_close()


@contextlib.contextmanager
def running(
    argv: list[str], env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=clean_env(env), cwd=cwd, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_compose_images_are_the_releases_the_local_binaries_are_built_from() -> None:
    """Compose and `make up` run the same collector and Jaeger releases."""
    builder = yaml.safe_load((ROOT / "otel-collector" / "builder-config.yaml").read_text())
    assert builder["dist"]["version"] == COLLECTOR_VERSION
    gomods = [m["gomod"] for kind in ("receivers", "exporters") for m in builder[kind]]
    contrib = [m for m in gomods if "opentelemetry-collector-contrib/" in m]
    assert contrib and all(m.endswith(f" v{COLLECTOR_VERSION}") for m in contrib), contrib
    result = subprocess.run(
        [str(backend_binary("OTELCOL")), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(),
        check=False,
    )
    assert result.stdout.split()[-1:] == [COLLECTOR_VERSION], result.stdout + result.stderr
    go_mod = (ROOT / "jaeger" / "build" / "go.mod").read_text()
    assert re.search(
        rf"^require github\.com/jaegertracing/jaeger {re.escape(JAEGER_MODULE_VERSION)}$",
        go_mod,
        re.M,
    ), f"jaeger/build/go.mod no longer pins {JAEGER_MODULE_VERSION} (= v{JAEGER_VERSION})"
    assert services()["jaeger"]["image"] == f"jaegertracing/jaeger:{JAEGER_VERSION}"


@pytest.mark.timeout(90)
def test_collector_and_jaeger_run_their_configs(
    tmp_path: Path, fake_prometheus: tuple[str, list[str]]
) -> None:
    """Jaeger's own check of its config is to start it: ``validate`` does not resolve the
    storage names jaeger_query refers to. Both binaries run the shared configs on free loopback
    ports; the health URLs are probed on the paths the compose healthchecks use, one span goes
    through the collector into Jaeger, the Monitor tab asks Prometheus for the spanmetrics,
    and SIGTERM (what ``docker compose stop`` sends) ends both cleanly."""
    require(COLLECTOR_CONFIG, "written with the local stack")
    require(JAEGER_CONFIG, "written with the local stack")
    collector_bin, jaeger_bin = backend_binary("OTELCOL"), backend_binary("JAEGER")
    prometheus_url, promql = fake_prometheus
    j_otlp, j_query, j_query_grpc, j_health, j_metrics = free_ports(5)
    c_grpc, c_http, c_health, c_spanmetrics, c_metrics = free_ports(5)
    jaeger_env = {
        "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{j_otlp}",
        "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{j_query}",
        "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{j_query_grpc}",
        "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{j_health}",
        "JAEGER_METRICS_PORT": str(j_metrics),
        "JAEGER_BADGER_DIR": str(tmp_path / "badger"),
        "PROMETHEUS_URL": prometheus_url,
    }
    collector_env = {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{c_grpc}",
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{c_http}",
        "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{c_health}",
        "OTELCOL_JAEGER_ENDPOINT": f"127.0.0.1:{j_otlp}",
        "OTELCOL_SPANMETRICS_ENDPOINT": f"127.0.0.1:{c_spanmetrics}",
        "OTELCOL_METRICS_PORT": str(c_metrics),
        "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
    }
    jaeger_health = urllib.parse.urlsplit(healthcheck_url("jaeger")).path
    collector_health = urllib.parse.urlsplit(healthcheck_url("otel-collector")).path
    jaeger_log, collector_log = tmp_path / "jaeger.log", tmp_path / "collector.log"

    with running(
        [str(jaeger_bin), "--config", str(JAEGER_CONFIG)], jaeger_env, tmp_path, jaeger_log
    ) as jaeger:
        wait_for(
            f"Jaeger never answered 200 on {jaeger_health} (the compose healthcheck's path)",
            lambda: http_get(f"http://127.0.0.1:{j_health}{jaeger_health}")[0] == 200,
            jaeger,
            jaeger_log,
        )
        with running(
            [str(collector_bin), "--config", str(COLLECTOR_CONFIG)],
            collector_env,
            tmp_path,
            collector_log,
        ) as collector:
            wait_for(
                f"the collector never answered 200 on {collector_health} (compose's probe)",
                lambda: http_get(f"http://127.0.0.1:{c_health}{collector_health}")[0] == 200,
                collector,
                collector_log,
            )
            trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
            now = time.time_ns()
            span = {
                "traceId": trace_id,
                "spanId": span_id,
                "name": "compose-static-probe",
                "kind": 2,
                "startTimeUnixNano": str(now - 5_000_000),
                "endTimeUnixNano": str(now),
            }
            payload = {
                "resourceSpans": [
                    {
                        "resource": {
                            "attributes": [
                                {"key": "service.name", "value": {"stringValue": "static-probe"}}
                            ]
                        },
                        "scopeSpans": [{"scope": {"name": "test"}, "spans": [span]}],
                    }
                ]
            }
            request = urllib.request.Request(
                f"http://127.0.0.1:{c_http}/v1/traces",
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200
            wait_for(
                "the span sent to the collector never showed up in Jaeger",
                lambda: http_get(f"http://127.0.0.1:{j_query}/api/traces/{trace_id}")[0] == 200,
                jaeger,
                jaeger_log,
            )
            status, body = http_get(f"http://127.0.0.1:{j_query}/api/traces/{trace_id}")
            (trace,) = json.loads(body)["data"]
            assert [s["spanID"] for s in trace["spans"]] == [span_id]
            assert http_get(f"http://127.0.0.1:{c_metrics}/metrics")[0] == 200
            # the spanmetrics connector's RED series for the probe's service
            spanmetrics_url = f"http://127.0.0.1:{c_spanmetrics}/metrics"
            wait_for(
                "no spanmetrics for the probe's service on the collector's Prometheus exporter",
                lambda: b'service_name="static-probe"' in http_get(spanmetrics_url)[1],
                collector,
                collector_log,
            )
            exposed = set(re.findall(r"^(\w+)\{", http_get(spanmetrics_url)[1].decode(), re.M))
            collector.send_signal(signal.SIGTERM)
            assert collector.wait(timeout=15) == 0, collector_log.read_text()[-4000:]

        # The Monitor tab: Jaeger asks PROMETHEUS_URL for RED series, by the very names the
        # collector exposes (and Prometheus scrapes: prometheus/prometheus.yml).
        for kind in ("calls", "errors", "latencies"):
            query = "service=static-probe" + ("&quantile=0.95" if kind == "latencies" else "")
            status, body = http_get(
                f"http://127.0.0.1:{j_query}/api/metrics/{kind}?{query}", timeout=10
            )
            assert status == 200, (kind, body[:500])
        queried = {name for q in promql for name in re.findall(r"traces_span_metrics_\w+", q)}
        assert "traces_span_metrics_calls_total" in queried, promql
        assert queried <= exposed, f"Jaeger queries {queried - exposed}, not exposed: {exposed}"
        jaeger.send_signal(signal.SIGTERM)
        assert jaeger.wait(timeout=15) == 0, jaeger_log.read_text()[-4000:]
