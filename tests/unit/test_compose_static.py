"""Static checks of the containerised stack: docker-compose.yml, the Dockerfile, .dockerignore,
.env.example, prometheus/prometheus.yml and docs/compose.md, without a Docker engine.

The compose file is parsed with PyYAML and validated against the official Compose Specification
JSON schema, vendored as ``tests/fixtures/compose-spec.json``: ``schema/compose-spec.json`` from
https://github.com/compose-spec/compose-spec at commit a08f8d51631b7127ddac3d2c65537db429d0f1d0
(authored 2025-10-21, the last change to that file), sha256
1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e (a test checks the hash). To
update it, copy the newer file over it and update this paragraph and ``COMPOSE_SCHEMA_SHA256``.
It is validated as written and after Compose's ``${VAR:-default}`` interpolation, which this
module applies to the parsed values the way Compose does (keys are not interpolated).

The collector and Jaeger binaries check the same configs in ``tests/e2e/test_backend_configs.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from stackctl.ports import Ports
from tests.compose_model import (
    BACKENDS,
    COLLECTOR_CONFIG,
    COLLECTOR_VERSION,
    COMPOSE_SCHEMA,
    COMPOSE_SCHEMA_SHA256,
    DATABASE,
    DOCS,
    JAEGER_CONFIG,
    JAEGER_VERSION,
    MEMORY_BUDGET,
    OTEL_SDK_VARS,
    OTLP_EXPORTERS,
    PROMETHEUS_CONFIG,
    PUBLISHED,
    PYTHON_SERVICES,
    REQUIRED_SECRETS,
    ROOT,
    compose,
    compose_raw,
    compose_text,
    compose_variable_refs,
    compose_with,
    container_env,
    env_of,
    environment,
    healthcheck_url,
    host_port,
    installer_pin,
    interpolate_model,
    memory_bytes,
    otel_env_refs,
    parse_env_example,
    passthrough_vars,
    require,
    required_refs,
    resolve_otel_config,
    services,
    settings_env_vars,
)

# --- the compose file: schema, second parser, shape --------------------------------------------


def test_the_vendored_schema_is_the_official_one() -> None:
    digest = hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest()
    assert digest == COMPOSE_SCHEMA_SHA256, "compose-spec.json changed: update its provenance"
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    assert schema["$schema"].endswith("draft-07/schema")


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    for label, doc in (("as written", compose_raw()), ("interpolated", compose())):
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, f"docker-compose.yml ({label}) breaks the Compose spec:\n" + "\n".join(
            f"  {'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:20]
        )


def test_the_stack_has_exactly_the_expected_services() -> None:
    assert set(services()) == {*PYTHON_SERVICES, *BACKENDS}
    assert compose_raw().get("name") == "otel-order-stack"
    assert "version" not in compose_raw(), "the top-level version key is obsolete"


def test_every_image_is_pinned() -> None:
    images = {name: svc["image"] for name, svc in services().items() if "image" in svc}
    for name, svc in services().items():
        inline = svc.get("build", {}).get("dockerfile_inline", "")
        for i, image in enumerate(re.findall(r"^FROM\s+(\S+)", inline, re.M)):
            images[f"{name} (inline FROM #{i + 1})"] = image
    for name in PYTHON_SERVICES:
        assert "image" not in services()[name], f"{name}: built from its Dockerfile, no image"
        assert services()[name]["build"]["dockerfile"] == "Dockerfile"
    assert images, "no images found"
    for where, image in images.items():
        assert "@sha256:" in image or re.search(r":[^/:]+$", image), f"{where}: {image} untagged"
        tag = image.rsplit(":", 1)[-1]
        assert tag not in {"latest", "stable", "main", "master", "edge"}, f"{where}: {image}"
        if where == DATABASE:
            continue  # PostgreSQL's major version is the pin: below
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{where}: {image} is not a full version"
    # PostgreSQL's major version fixes its data format; its minor releases are fixes only, and
    # the official image's <major>-bookworm tag is what Debian bookworm's postgresql-15 (the
    # stand-in) is. The chart's evaluation PostgreSQL is the same image.
    assert services()[DATABASE]["image"] == "postgres:15-bookworm"
    chart = yaml.safe_load((ROOT / "deploy/helm/otel-order-stack/values.yaml").read_text())
    assert chart["images"]["postgresql"] == services()[DATABASE]["image"]
    assert services()["jaeger"]["image"] == f"jaegertracing/jaeger:{JAEGER_VERSION}"
    assert re.fullmatch(r"prom/prometheus:v3\.\d+\.\d+", services()["prometheus"]["image"])
    inline = services()["otel-collector"]["build"]["dockerfile_inline"]
    stages = re.findall(r"^FROM\s+(\S+)", inline, re.M)
    assert stages[-1] == f"otel/opentelemetry-collector-contrib:{COLLECTOR_VERSION}", (
        "the collector must run the official contrib image at the local collector's version"
    )
    assert services()["otel-collector"]["image"].endswith(f":{COLLECTOR_VERSION}")
    assert services()["otel-collector"].get("pull_policy") == "build"


def test_every_service_has_a_real_healthcheck() -> None:
    for name, svc in services().items():
        hc = svc.get("healthcheck")
        assert hc, f"{name} has no healthcheck"
        assert not hc.get("disable"), f"{name}: healthcheck disabled"
        test = hc["test"]
        assert isinstance(test, list) and test[0] == "CMD", f"{name}: use exec form ['CMD', ...]"
        if name == DATABASE:
            continue  # pg_isready: below
        assert "/" in " ".join(test), f"{name}: the healthcheck must probe an endpoint"
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in hc, f"{name}: healthcheck.{key} missing"


def test_postgres_healthcheck_asks_the_server_over_tcp() -> None:
    """pg_isready on 127.0.0.1:5432, where the services connect: the first start's setup
    server listens on the Unix socket only, so postgres is healthy once the real one is up."""
    test = services()[DATABASE]["healthcheck"]["test"]
    env = environment(DATABASE)
    assert test == [
        "CMD",
        "pg_isready",
        "--host=127.0.0.1",
        "--port=5432",
        f"--username={env['POSTGRES_USER']}",
        f"--dbname={env['POSTGRES_DB']}",
    ]
    assert services()[DATABASE]["expose"] == ["5432"]


def test_python_healthchecks_probe_readyz_on_the_service_port() -> None:
    for name, svc in PYTHON_SERVICES.items():
        test = services()[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], f"{name}: the image has python, not curl"
        assert healthcheck_url(name) == f"http://127.0.0.1:{svc.port}/readyz"
        assert environment(name)[svc.port_var] == str(svc.port)


class _Handler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def readyz_server() -> Iterator[tuple[ThreadingHTTPServer, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_python_healthcheck_command_follows_readyz(
    readyz_server: tuple[ThreadingHTTPServer, type[_Handler]],
) -> None:
    """Run the compose healthcheck's Python one-liner: exit 0 on 200, non-zero on 503/refused."""
    server, handler = readyz_server
    port = server.server_address[1]
    code = services()["api-gateway"]["healthcheck"]["test"][3].replace(":8080/", f":{port}/")

    def probe() -> int:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, timeout=10
        ).returncode

    assert probe() == 0
    handler.status = 503
    assert probe() != 0
    server.shutdown()
    server.server_close()
    assert probe() != 0


def test_start_order_waits_for_health() -> None:
    graph: dict[str, set[str]] = {}
    for name, svc in services().items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must use the long form"
        for dep, spec in deps.items():
            assert spec.get("condition") == "service_healthy", f"{name} -> {dep}"
        graph[name] = set(deps)
    assert graph["api-gateway"] >= {"inventory-service", "order-service", "notification-service"}
    for name in PYTHON_SERVICES:
        assert "otel-collector" in graph[name], f"{name} should start after the collector"
        assert DATABASE in graph[name], f"{name} should start once PostgreSQL answers"
    assert not graph[DATABASE], "PostgreSQL waits for nobody"
    assert graph["otel-collector"] == {"jaeger"}
    assert not graph["prometheus"], "Prometheus retries its scrapes; it waits for nobody"
    assert "prometheus" not in graph["jaeger"], "trace ingestion must not wait for metrics"
    # no cycles
    seen: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"dependency cycle: {' -> '.join((*path, node))}"
        if node in seen:
            return
        for dep in graph[node]:
            visit(dep, (*path, node))
        seen.add(node)

    for node in graph:
        visit(node, ())


def test_restart_policy_and_hardening() -> None:
    for name, svc in services().items():
        assert svc.get("restart") == "unless-stopped", f"{name}: restart policy"
        assert svc.get("read_only") is True, f"{name}: read-only root filesystem"
        assert svc.get("cap_drop") == ["ALL"], f"{name}: drop all capabilities"
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert svc.get("logging", {}).get("options", {}).get("max-size"), f"{name}: log rotation"
        assert "privileged" not in svc and "network_mode" not in svc, name
        # The image's own non-root user; postgres names it, since the official image starts as
        # root only to chown and drop to it (which needs capabilities that are dropped here).
        expected = "postgres" if name == DATABASE else None
        assert svc.get("user") == expected, f"{name}: the image's own non-root user is used"
    for name in PYTHON_SERVICES:
        # uvicorn's graceful shutdown is 10 s; SIGKILL must not cut the span flush short.
        assert services()[name]["stop_grace_period"] in ("15s", "20s", "30s")


def test_data_lives_on_named_volumes() -> None:
    declared = set(compose()["volumes"])
    used: dict[str, str] = {}
    for name, svc in services().items():
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
                assert source not in used, f"{source} is shared by {used[source]} and {name}"
                used[source] = name
    for name in PYTHON_SERVICES:
        # their state is in PostgreSQL: no volume, and /data is on the read-only root
        assert "volumes" not in services()[name], f"{name}: its data belongs in PostgreSQL"
    postgres = services()[DATABASE]
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    # the socket and lock file, and the entrypoint's scratch space, beside a read-only root
    assert {m.split(":")[0] for m in postgres["tmpfs"]} == {"/var/run/postgresql", "/tmp"}
    command = services()["prometheus"]["command"]
    assert "--storage.tsdb.path=/prometheus" in command
    assert "prometheus-data:/prometheus" in services()["prometheus"]["volumes"]
    assert "jaeger-data:/tmp" in services()["jaeger"]["volumes"]
    assert set(used) == declared, f"declared but unused volumes: {declared - set(used)}"


def test_memory_limits_keep_the_stack_within_its_budget() -> None:
    limits = {}
    for name, svc in services().items():
        resources = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert "memory" in resources, f"{name}: no memory limit"
        assert "cpus" in resources, f"{name}: no CPU limit"
        limits[name] = memory_bytes(resources["memory"])
    total = sum(limits.values())
    assert total < MEMORY_BUDGET, f"memory limits add up to {total / 2**20:.0f} MiB: {limits}"
    # PostgreSQL's shared buffers stay well inside its container
    shared = next(a for a in services()[DATABASE]["command"] if a.startswith("shared_buffers="))
    assert memory_bytes(shared.split("=")[1].lower()) <= limits[DATABASE] // 2
    # The file's header states the total; keep it true.
    stated = re.search(r"Memory limits add up to (\d+) MiB", compose_text())
    assert stated and int(stated[1]) == total // 2**20
    # Go processes get a soft limit below their container limit, so GC works before the OOM killer.
    for name in ("otel-collector", "jaeger"):
        soft = memory_bytes(environment(name)["GOMEMLIMIT"].replace("MiB", "m"))
        assert soft < limits[name], f"{name}: GOMEMLIMIT must be below the container limit"


def test_only_gateway_jaeger_ui_and_prometheus_are_published_on_loopback() -> None:
    for name, svc in compose_raw()["services"].items():
        ports = svc.get("ports", [])
        if name not in PUBLISHED:
            assert not ports, f"{name} must not be published"
            continue
        assert len(ports) == 1, f"{name}: one published port"
        assert ports[0].startswith("${BIND_ADDRESS:-127.0.0.1}:"), f"{name}: {ports[0]}"
    for name, port in PUBLISHED.items():
        (mapping,) = services()[name]["ports"]
        assert mapping == f"127.0.0.1:{port}:{port}", f"{name}: {mapping}"
    # overridable: another bind address and other host ports
    moved = compose_with(
        {
            "BIND_ADDRESS": "0.0.0.0",
            "GATEWAY_PORT": "9080",
            "JAEGER_QUERY_PORT": "26686",
            "PROMETHEUS_PORT": "19090",
        }
    )["services"]
    assert moved["api-gateway"]["ports"] == ["0.0.0.0:9080:9080"]
    assert env_of({"services": moved}, "api-gateway")["GATEWAY_PORT"] == "9080"
    assert moved["jaeger"]["ports"] == ["0.0.0.0:26686:16686"]
    assert moved["prometheus"]["ports"] == ["0.0.0.0:19090:9090"]


def test_service_ports_and_urls_follow_the_env() -> None:
    moved = compose_with(
        {"INVENTORY_PORT": "9181", "ORDER_PORT": "9182", "NOTIFICATION_PORT": "9183"}
    )["services"]
    gateway = env_of({"services": moved}, "api-gateway")
    assert gateway["INVENTORY_URL"] == "http://inventory-service:9181"
    assert gateway["ORDER_URL"] == "http://order-service:9182"
    assert gateway["NOTIFICATION_URL"] == "http://notification-service:9183"
    assert env_of({"services": moved}, "inventory-service")["INVENTORY_PORT"] == "9181"
    assert "127.0.0.1:9181/readyz" in moved["inventory-service"]["healthcheck"]["test"][3]


def test_python_services_get_every_setting_and_otel_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, svc in PYTHON_SERVICES.items():
        env = environment(name)
        wanted = settings_env_vars(svc.settings) | OTEL_SDK_VARS | {"OTEL_SERVICE_NAME"}
        missing = wanted - set(env)
        assert not missing, f"{name}: compose does not pass {sorted(missing)}"
        assert env["HOST"] == "0.0.0.0"
        assert env["OTEL_SERVICE_NAME"] == name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
        assert "deployment.environment.name=compose" in env["OTEL_RESOURCE_ATTRIBUTES"]
        # What compose sends must parse: build the settings from exactly the container's env.
        for var in settings_env_vars(svc.settings) | {"PORT"}:
            monkeypatch.delenv(var, raising=False)
        for key, value in container_env(name).items():
            monkeypatch.setenv(key, value)
        settings = svc.settings()
        assert (settings.host, settings.port) == ("0.0.0.0", svc.port)
        assert str(settings.data_dir) == "/data"
        for key in container_env(name):
            monkeypatch.delenv(key)


# --- .env.example --------------------------------------------------------------------------


def test_env_example_defines_every_compose_variable_with_the_same_default() -> None:
    active, commented, _ = parse_env_example()
    for name, default in compose_variable_refs().items():
        assert name in active, f"${{{name}}} is used in docker-compose.yml but not in .env.example"
        assert default is not None, f"${{{name}}} needs a :- default so .env stays optional"
        assert active[name] == default, (
            f"{name}: .env.example says {active[name]!r}, docker-compose.yml defaults to "
            f"{default!r}; copying .env.example must not change the stack"
        )
    for name, keys in passthrough_vars().items():
        for key in keys:
            assert key in commented | set(active), f"{name}: {key} is not in .env.example"
            assert key not in active or active[key], f"{key}: leave it commented, not empty"
    # and so compose reads the same model with .env.example as without it
    assert compose_with(active) == compose()


def test_env_example_documents_every_variable_the_services_read() -> None:
    active, commented, _ = parse_env_example()
    documented = set(active) | commented
    for svc in PYTHON_SERVICES.values():
        missing = settings_env_vars(svc.settings) - documented
        assert not missing, f"{svc.settings.__name__} reads {sorted(missing)}: add to .env.example"
    assert set(active) >= OTEL_SDK_VARS, sorted(OTEL_SDK_VARS - set(active))
    assert {"BIND_ADDRESS", "JAEGER_QUERY_PORT", "PROMETHEUS_PORT"} <= set(active)


def test_env_example_is_commented_and_has_the_fault_section() -> None:
    _, _, lines = parse_env_example()
    for i, line in enumerate(lines):
        if re.fullmatch(r"#?\s?[A-Z][A-Z0-9_]*=.*", line):
            assert i and lines[i - 1].startswith("#"), f"line {i + 1}: {line!r} needs a comment"
        if re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", line):
            value = line.split("=", 1)[1]
            assert not value.startswith(("'", '"')) and " #" not in value, f"line {i + 1}"
    assert any("FAULT-INJECTION SECTION" in line for line in lines)


# --- the database and its password -----------------------------------------------------------


def test_compose_refuses_to_start_without_the_database_password() -> None:
    """POSTGRES_PASSWORD has no default anywhere in the repository: interpolation (what every
    `docker compose` command does first) fails, naming the variable."""
    assert set(required_refs()) == set(REQUIRED_SECRETS) == {"POSTGRES_PASSWORD"}
    for env in ({}, {"POSTGRES_PASSWORD": ""}):
        with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
            interpolate_model(compose_raw(), env)
    active, commented, _ = parse_env_example()
    assert "POSTGRES_PASSWORD" in commented and "POSTGRES_PASSWORD" not in active
    assert "POSTGRES_PASSWORD" not in compose_variable_refs()  # no default to document


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"POSTGRES_PASSWORD": "0f9a1c2e", "POSTGRES_USER": "shop", "POSTGRES_DB": "sales"},
        {"POSTGRES_PASSWORD": "A-b.c_d~e", "DATABASE_POOL_SIZE": "3"},
    ],
)
def test_the_services_reach_postgres_with_its_own_user_password_and_database(
    env: dict[str, str],
) -> None:
    model = compose_with(env)
    password = {**REQUIRED_SECRETS, **env}["POSTGRES_PASSWORD"]
    postgres = env_of(model, DATABASE)
    user, db = postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]
    assert (user, db) == (env.get("POSTGRES_USER", "orders"), env.get("POSTGRES_DB", "orders"))
    assert postgres["POSTGRES_PASSWORD"] == password
    for name in PYTHON_SERVICES:
        service = env_of(model, name)
        assert service["DATABASE_URL"] == f"postgresql://{user}:{password}@postgres:5432/{db}"
        assert service["DATABASE_POOL_SIZE"] == env.get("DATABASE_POOL_SIZE", "8")
    # the password reaches the four services and postgres, no other container, no command
    for name, svc in model["services"].items():
        holders = {k for k, v in env_of(model, name).items() if v and password in v}
        expected = (
            {"DATABASE_URL"} if name in PYTHON_SERVICES else {"POSTGRES_PASSWORD"}
            if name == DATABASE else set()
        )  # fmt: skip
        assert holders == expected, name
        assert password not in str({k: v for k, v in svc.items() if k != "environment"}), name


def test_postgres_has_room_for_every_services_pool() -> None:
    command = services()[DATABASE]["command"]
    assert command[0] == "postgres"
    max_connections = int(
        next(a for a in command if a.startswith("max_connections=")).split("=")[1]
    )
    pool = int(environment("order-service")["DATABASE_POOL_SIZE"])
    reserved = 3  # superuser_reserved_connections
    assert len(PYTHON_SERVICES) * pool + reserved <= max_connections


# --- collector, Jaeger, Prometheus ------------------------------------------------------------


def test_collector_runs_the_local_stacks_config() -> None:
    svc = services()["otel-collector"]
    mounts = {m.split(":")[0]: m.split(":")[1] for m in svc["volumes"]}
    assert mounts.get("./otel-collector/config.yaml"), "mount the local stack's collector config"
    target = mounts["./otel-collector/config.yaml"]
    assert svc["command"] == ["--config", target]
    assert svc["volumes"][0].endswith(":ro")
    require(COLLECTOR_CONFIG, "written with the local stack")


def test_compose_sets_every_variable_the_collector_config_needs() -> None:
    require(COLLECTOR_CONFIG, "written with the local stack")
    env = container_env("otel-collector")
    for name, default in otel_env_refs(COLLECTOR_CONFIG.read_text()).items():
        assert default is not None or name in env, f"collector config needs {name}; set it"
    config = resolve_otel_config(COLLECTOR_CONFIG, env)
    grpc = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert host_port(grpc) == ("0.0.0.0", 4317), "services reach the collector at :4317"
    exporters = config["exporters"]
    jaeger = [e["endpoint"] for k, e in exporters.items() if k.split("/")[0] in OTLP_EXPORTERS]
    assert [host_port(e) for e in jaeger] == [("jaeger", 4317)], jaeger


def test_prometheus_scrapes_the_collectors_spanmetrics_and_self_metrics() -> None:
    require(COLLECTOR_CONFIG, "written with the local stack")
    prom = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in prom["scrape_configs"]
    }
    config = resolve_otel_config(COLLECTOR_CONFIG, container_env("otel-collector"))
    (spanmetrics,) = [e for k, e in config["exporters"].items() if k.split("/")[0] == "prometheus"]
    host, port = host_port(spanmetrics["endpoint"])
    assert host == "0.0.0.0", "Prometheus scrapes from another container"
    assert targets["spanmetrics"] == [f"otel-collector:{port}"]
    readers = config["service"]["telemetry"]["metrics"]["readers"]
    pulls = [r["pull"]["exporter"]["prometheus"] for r in readers if "pull" in r]
    assert pulls, "the collector's self-metrics should be a pull (Prometheus) reader"
    assert pulls[0]["host"] == "0.0.0.0"
    assert targets["otel-collector"] == [f"otel-collector:{pulls[0]['port']}"]
    expose = {str(p) for p in services()["otel-collector"]["expose"]}
    assert {str(port), str(pulls[0]["port"])} <= expose


def test_collector_healthcheck_probes_its_health_extension() -> None:
    require(COLLECTOR_CONFIG, "written with the local stack")
    config = resolve_otel_config(COLLECTOR_CONFIG, container_env("otel-collector"))
    (health,) = [v for k, v in config["extensions"].items() if k.split("/")[0] == "health_check"]
    _, port = host_port(health.get("endpoint", "localhost:13133"))
    url = healthcheck_url("otel-collector")
    assert host_port(url.split("/")[2])[1] == port
    assert url.endswith(health.get("path", "/"))
    assert services()["otel-collector"]["healthcheck"]["test"][1] == "/usr/local/bin/busybox"


def test_jaeger_config_fits_compose() -> None:
    require(JAEGER_CONFIG, "written with the local stack")
    svc = services()["jaeger"]
    mounts = {m.split(":")[0]: m.split(":")[1] for m in svc["volumes"]}
    target = mounts["./jaeger/config.yaml"]
    assert svc["command"] == ["--config", target]
    config = resolve_otel_config(JAEGER_CONFIG, container_env("jaeger"))
    grpc = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert host_port(grpc) == ("0.0.0.0", 4317), "the collector exports to jaeger:4317"
    query = config["extensions"]["jaeger_query"]
    http = query.get("http", {}).get("endpoint", "0.0.0.0:16686")
    assert host_port(http) == ("0.0.0.0", 16686)
    storage = config["extensions"]["jaeger_storage"]
    (badger,) = [b["badger"] for b in storage["backends"].values() if "badger" in b]
    assert not badger.get("ephemeral", False)
    for directory in badger["directories"].values():
        assert directory.startswith("/tmp/"), "Badger must write to the jaeger-data volume"
    (prom,) = [b["prometheus"] for b in storage["metric_backends"].values()]
    assert prom["endpoint"] == "http://prometheus:9090"
    assert query["storage"].get("metrics"), "the Monitor tab needs jaeger_query.storage.metrics"
    health = config["extensions"]["healthcheckv2"]["http"]
    assert (
        host_port(healthcheck_url("jaeger").split("/")[2])[1]
        == host_port((health or {}).get("endpoint", "localhost:13133"))[1]
    )


def test_env_example_documents_every_variable_the_backend_configs_read() -> None:
    """Each ``${env:VAR:-default}`` of the two configs is either wiring that compose sets for
    the container, or a knob documented in .env.example with the config's own default (and,
    where compose lets .env tune it, with compose's default equal to it)."""
    active, commented, _ = parse_env_example()
    refs = compose_variable_refs()
    for path, container in ((COLLECTOR_CONFIG, "otel-collector"), (JAEGER_CONFIG, "jaeger")):
        require(path, "written with the local stack")
        env = environment(container)
        for name, default in otel_env_refs(path.read_text()).items():
            assert default is not None, f"{path.name}: ${{env:{name}}} needs a local default"
            if name in active:
                assert active[name] == default, (
                    f"{name}: .env.example says {active[name]!r}, "
                    f"{path.name} defaults to {default!r}"
                )
            if env.get(name) is None:
                assert name in active, (
                    f"{path.name} reads {name}: compose leaves it to the default, so document "
                    "it in .env.example"
                )
            if name in refs:
                assert refs[name] == default, f"{name}: compose and {path.name} defaults differ"
    # the knobs a user tunes in compose reach the containers
    moved = compose_with(
        {
            "OTELCOL_BATCH_TIMEOUT": "1s",
            "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "30s",
            "JAEGER_TRACE_TTL": "24h",
        }
    )
    assert env_of(moved, "otel-collector")["OTELCOL_BATCH_TIMEOUT"] == "1s"
    assert env_of(moved, "otel-collector")["OTELCOL_SPANMETRICS_FLUSH_INTERVAL"] == "30s"
    assert env_of(moved, "jaeger")["JAEGER_TRACE_TTL"] == "24h"
    assert not commented & set(active)


def test_env_example_documents_the_local_stacks_ports() -> None:
    """`make up` reads ``<NAME>_PORT`` for every port (stackctl.ports); the same names and
    defaults are in .env.example, and compose uses the same names for what it publishes."""
    active, _, _ = parse_env_example()
    for field in dataclasses.fields(Ports):
        name = f"{field.name.upper()}_PORT"
        assert active.get(name) == str(field.default), f"{name}: .env.example vs stackctl"
    refs = compose_variable_refs()
    for name in ("GATEWAY_PORT", "JAEGER_QUERY_PORT", "PROMETHEUS_PORT"):
        assert refs[name] == active[name], name


def test_env_example_values_are_the_local_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copying .env.example to .env changes no service setting in local mode either."""
    active, _, _ = parse_env_example()
    for svc in PYTHON_SERVICES.values():
        names = settings_env_vars(svc.settings)
        for var in names:
            monkeypatch.delenv(var, raising=False)
        defaults = svc.settings().model_dump()
        for var in names & set(active):
            monkeypatch.setenv(var, active[var])
        assert svc.settings().model_dump() == defaults, svc.settings.__name__
        for var in names:
            monkeypatch.delenv(var, raising=False)


# --- Dockerfile -----------------------------------------------------------------------------

DOCKERFILE = ROOT / "Dockerfile"


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def service_build(name: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as compose builds ``name``: its build args (over the
    ARG defaults) substituted into every ``${ARG}``, the way the builder expands them."""
    build = services()[name]["build"]
    assert build["context"] == "." and build["dockerfile"] == "Dockerfile", build
    steps = dockerfile_instructions(ROOT / build["dockerfile"])
    args = {k: str(v) for k, v in build.get("args", {}).items()}
    for keyword, rest in steps:
        if keyword == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args.setdefault(key, value)
    declared = {rest.split("=", 1)[0] for keyword, rest in steps if keyword == "ARG"}
    assert set(build.get("args", {})) <= declared, f"{name}: build args the Dockerfile lacks"

    def expand(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), text)

    return [(keyword, expand(rest)) for keyword, rest in steps]


@pytest.mark.parametrize("name", sorted(PYTHON_SERVICES))
def test_dockerfile(name: str) -> None:
    svc = PYTHON_SERVICES[name]
    path = DOCKERFILE
    steps = service_build(name)
    assert services()[name]["build"]["args"] == {
        "SERVICE": svc.directory,
        "SERVICE_MODULE": svc.module,
        "SERVICE_PORT": str(svc.port),
    }
    stages = [rest.split()[0] for keyword, rest in steps if keyword == "FROM"]
    assert len(stages) >= 2, f"{path}: multi-stage build expected"
    for image in stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image), f"{path}: FROM {image}"
    final = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    final_steps = steps[final:]
    # non-root at run time
    users = [rest for k, rest in final_steps if k == "USER"]
    assert users, f"{path}: the final stage needs a USER"
    assert users[-1].split(":")[0] not in ("root", "0"), f"{path}: USER {users[-1]}"
    # no build tools in the runtime stage: nothing installed there but the builder's venv
    for keyword, rest in final_steps:
        if keyword == "RUN":
            assert not re.search(r"\b(pip|uv|apt-get|apk)\b\s+(install|sync|add)", rest), rest
        if keyword == "COPY":
            assert rest.startswith("--from=builder"), f"{path}: runtime COPY {rest}"
    env_text = " ".join(rest for k, rest in final_steps if k == "ENV")
    assert "PYTHONUNBUFFERED=1" in env_text
    assert any(k == "WORKDIR" for k, _ in final_steps)
    # CMD: a shell that execs `python -m <this service's module>` (python becomes PID 1 and
    # gets SIGTERM), the module taken from the ENV the build args set
    (cmd,) = [rest for k, rest in final_steps if k == "CMD"]
    assert json.loads(cmd) == ["sh", "-c", 'exec python -m "$SERVICE_MODULE"'], cmd
    assert f"SERVICE_MODULE={svc.module}" in env_text.split()
    assert f"OTEL_SERVICE_NAME={svc.name}" in env_text.split()
    assert not any(k == "ENTRYPOINT" for k, _ in final_steps)
    package = ROOT / svc.directory / svc.module
    assert (package / "__init__.py").is_file() and (package / "__main__.py").is_file()
    # the locked dependencies, in their own cached layer before the code
    builder = " ".join(f"{k} {r}" for k, r in steps[:final])
    assert "pyproject.toml uv.lock" in builder
    assert (ROOT / "uv.lock").is_file() and (ROOT / "pyproject.toml").is_file()
    args = dict(rest.split("=", 1) for k, rest in steps if k == "ARG" and "=" in rest)
    assert re.search(r"uv==\S*\d", builder) and re.fullmatch(
        r"\d+\.\d+\.\d+", args["UV_VERSION"]
    ), "pin uv"
    assert installer_pin("UV_VERSION") == args["UV_VERSION"], "the same uv as the local install"
    runs = [rest for k, rest in steps[:final] if k == "RUN"]
    syncs = [m for rest in runs for m in re.findall(r"uv sync ([^&;|]*)", rest)]
    assert len(syncs) == 2, syncs
    # --locked: a uv.lock out of date with pyproject.toml fails the build (--frozen would
    # silently install the stale pins)
    assert all("--locked" in s and "--no-dev" in s and "--frozen" not in s for s in syncs), syncs
    assert "--no-install-project" in syncs[0]
    # the project's own wheel is never taken from uv's cache: it is keyed on pyproject.toml,
    # the same in every service's build (tests/compose/ runs the images this guards)
    project_sync = next(rest for rest in runs if "--no-install-project" not in rest)
    assert "--no-cache" in syncs[1] and "type=cache" not in project_sync, project_sync
    dep_layer = builder.index("--no-install-project")
    assert builder.index(f"COPY {svc.directory}/{svc.module}") > dep_layer
    assert builder.index("COPY servicekit") > dep_layer
    # only this service's package goes in
    for other in PYTHON_SERVICES.values():
        if other is not svc:
            assert other.module not in builder, f"{path} copies {other.module} for {name}"
    # the image's defaults match compose and the service's settings
    assert "HOST=0.0.0.0" in env_text
    assert f"EXPOSE {svc.port}" in " ".join(f"{k} {r}" for k, r in final_steps)


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent decides."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                out += ".*"
                i += 2
            elif pattern[i] == "*":
                out += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                out += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out += pattern[i : end + 1]
                i = end + 1
            else:
                out += re.escape(pattern[i])
                i += 1
        return re.compile(out)

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip().strip("/")
        rx = regex(pattern)
        if any(rx.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_lets_every_copy_source_through_and_keeps_secrets_out() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for name in PYTHON_SERVICES:
        for keyword, rest in service_build(name):
            if keyword != "COPY" or rest.startswith("--from"):
                continue
            *sources, _ = rest.split()
            for source in sources:
                files = (
                    [source]
                    if (ROOT / source).is_file()
                    else [str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")]
                )
                assert files, f"COPY {source}: nothing to copy"
                for file in files:
                    assert (ROOT / file).exists(), file
                    assert not _dockerignore_excludes(file, patterns), f".dockerignore drops {file}"
    never_sent = (
        ".env",
        ".venv/bin/python",
        ".git/config",
        "data/gateway.db",
        "servicekit/__pycache__/app.cpython-311.pyc",
        "tests/unit/conftest.py",
    )
    for secret in never_sent:
        assert _dockerignore_excludes(secret, patterns), f"{secret} would be sent to the daemon"


# --- docs ------------------------------------------------------------------------------------


def test_docs_resource_table_matches_compose() -> None:
    text = DOCS.read_text()
    rows = dict(re.findall(r"^\|\s*`?([a-z-]+)`?\s*\|\s*(\d+)\s*MiB\s*\|", text, re.M))
    expected = {
        name: str(memory_bytes(svc["deploy"]["resources"]["limits"]["memory"]) // 2**20)
        for name, svc in services().items()
    }
    assert rows == expected, "docs/compose.md's limits table is out of step with compose"
    total = sum(int(v) for v in expected.values())
    assert f"{total} MiB" in text
    assert "```mermaid" in text
    assert "cp .env.example .env" in text and "docker compose up -d --build --wait" in text


@pytest.mark.parametrize(
    ("manifest", "pin"),
    [
        ("otel-collector/builder-config.yaml", "COLLECTOR_VERSION"),
        ("otel-collector/scale-out/builder-config.yaml", "SCALE_OUT_COLLECTOR_VERSION"),
    ],
)
def test_collector_manifests_are_on_the_installers_pin(manifest: str, pin: str) -> None:
    """Every component of an OCB manifest comes from the one release the installer pins (a
    ``replaces`` entry pins a dependency of a component, not a component)."""
    version = installer_pin(pin)
    builder = yaml.safe_load((ROOT / manifest).read_text())
    assert builder["dist"]["version"] == version
    components = {k: v for k, v in builder.items() if k not in ("dist", "replaces")}
    gomods = [m["gomod"] for items in components.values() for m in items]
    assert gomods and all(m.endswith(f" v{version}") for m in gomods), gomods


def test_the_stand_ins_cover_every_third_party_image() -> None:
    """docker/stand-ins/build.sh reads its tags from the files that name them: every image of
    the compose file and the Dockerfile's base, PostgreSQL's included (no engine needed)."""
    out = subprocess.run(
        [str(ROOT / "docker" / "stand-ins" / "build.sh"), "--tags"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    named = {s["image"] for s in services().values() if "image" in s and "pull_policy" not in s}
    for svc in services().values():
        named |= set(
            re.findall(r"^FROM\s+(\S+)", svc.get("build", {}).get("dockerfile_inline", ""), re.M)
        )
    python = next(
        rest
        for k, rest in dockerfile_instructions(DOCKERFILE)
        if k == "ARG" and rest.startswith("PYTHON_IMAGE=")
    )
    assert sorted(out) == sorted({*named, python.split("=", 1)[1]}), out
    assert services()[DATABASE]["image"] in out
    assert (ROOT / "docker" / "stand-ins" / "postgres" / "Dockerfile").is_file()
