"""Static checks of the containerised stack: docker-compose.yml, the Dockerfiles, .dockerignore,
.env.example, prometheus/prometheus.yml and docs/compose.md, without a Docker engine.

The compose file is parsed with PyYAML and validated against the official Compose Specification
JSON schema, vendored as ``tests/fixtures/compose-spec.json``: ``schema/compose-spec.json`` from
https://github.com/compose-spec/compose-spec at commit a08f8d51631b7127ddac3d2c65537db429d0f1d0
(authored 2025-10-21, the last change to that file), sha256
1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e (a test checks the hash). To
update it, copy the newer file over it and update this paragraph and ``COMPOSE_SCHEMA_SHA256``.
It is validated as written and after Compose's ``${VAR:-default}`` interpolation, which this
module applies to the parsed values the way Compose does (keys are not interpolated).

The collector and Jaeger configs are checked by the real binaries the local stack runs, found
with ``scripts/install_backends.sh --paths``: ``validate`` with the environment compose gives
each container and with the local defaults, and a short run of both on free loopback ports
(health endpoints as the compose healthchecks probe them, a span through the collector into
Jaeger, the Monitor tab asking Prometheus). A missing binary FAILS these tests, naming the
installer; it never skips them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
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

import jsonschema
import pytest
import yaml
from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings

from api_gateway.app import GatewaySettings
from inventory_service.app import InventorySettings
from notification_service.app import NotificationSettings
from order_service.app import OrderSettings
from stackctl.ports import Ports
from stackctl.stack import binary_paths

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE_SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec.json"
# sha256 of compose-spec/compose-spec schema/compose-spec.json at a08f8d51 (see the docstring)
COMPOSE_SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"
COLLECTOR_CONFIG = ROOT / "otel-collector" / "config.yaml"
JAEGER_CONFIG = ROOT / "jaeger" / "config.yaml"
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
DOCS = ROOT / "docs" / "compose.md"
INSTALLER = ROOT / "scripts" / "install_backends.sh"

COLLECTOR_VERSION = "0.155.0"
JAEGER_VERSION = "2.13.0"
# Jaeger v2 is released from the module github.com/jaegertracing/jaeger under v1.x tags:
# v1.76.0 is v2.13.0. Bump both together (and the image tag in docker-compose.yml).
JAEGER_MODULE_VERSION = "v1.76.0"
ONE_GIB = 1024**3
OTLP_EXPORTERS = ("otlp", "otlp_grpc")


class PythonService:
    def __init__(
        self, name: str, directory: str, module: str, port_var: str, port: int, settings: type
    ) -> None:
        self.name, self.directory, self.module = name, directory, module
        self.port_var, self.port, self.settings = port_var, port, settings


PYTHON_SERVICES = {
    s.name: s
    for s in (
        PythonService(
            "api-gateway", "api-gateway", "api_gateway", "GATEWAY_PORT", 8080, GatewaySettings
        ),
        PythonService(
            "inventory-service",
            "inventory-service",
            "inventory_service",
            "INVENTORY_PORT",
            8081,
            InventorySettings,
        ),
        PythonService(
            "order-service", "order-service", "order_service", "ORDER_PORT", 8082, OrderSettings
        ),
        PythonService(
            "notification-service",
            "notification-service",
            "notification_service",
            "NOTIFICATION_PORT",
            8083,
            NotificationSettings,
        ),
    )
}
BACKENDS = ("otel-collector", "jaeger", "prometheus")
PUBLISHED = {"api-gateway": 8080, "jaeger": 16686, "prometheus": 9090}
# Variables the OpenTelemetry SDK reads in every service (not pydantic settings).
OTEL_SDK_VARS = {
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SDK_DISABLED",
}


# --- helpers: compose interpolation, .env files, collector-style ${env:VAR} -------------------

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}
_BRACED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
_BARE = re.compile(r"\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation of one string value (nesting, unused in the file, is refused)."""

    def braced(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"] or ""
        assert "$" not in arg, f"nested interpolation in {m[0]!r} is not handled here"
        value = env.get(name)
        if op is None:
            return value or ""
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?"):
            if (value is None) or (op == ":?" and not value):
                raise ValueError(f"required variable {name} is missing: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        return arg if value is not None else ""  # "+"

    out = []
    for part in re.split(r"(\$\$)", text):
        if part == "$$":
            out.append("$")
            continue
        part = _BRACED.sub(braced, part)
        part = _BARE.sub(lambda m: env.get(m["name"], ""), part)
        out.append(part)
    return "".join(out)


def interpolate_model(node: Any, env: dict[str, str]) -> Any:
    """Interpolate every string value of a parsed compose file (a new tree; keys untouched)."""
    if isinstance(node, dict):
        return {key: interpolate_model(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_model(item, env) for item in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


@cache
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@cache
def compose_raw() -> dict[str, Any]:
    return yaml.safe_load(compose_text())


def compose_with(env: dict[str, str]) -> dict[str, Any]:
    """The compose model after interpolation with ``env`` (the project's environment)."""
    return interpolate_model(compose_raw(), env)


@cache
def compose() -> dict[str, Any]:
    """The compose model as Docker sees it without a .env file (every default applies)."""
    return compose_with({})


def services() -> dict[str, Any]:
    return compose()["services"]


def env_of(model: dict[str, Any], service: str) -> dict[str, str | None]:
    """A service's environment as compose passes it: strings, None for "pass through if set"."""
    env = model["services"][service].get("environment", {})
    assert isinstance(env, dict), f"{service}: environment should be a mapping"
    return {k: None if v is None else str(v) for k, v in env.items()}


def environment(service: str) -> dict[str, str | None]:
    return env_of(compose(), service)


def compose_variable_refs() -> dict[str, str | None]:
    """Every ${VAR...} in docker-compose.yml, with its :- default (None when it has none)."""
    strings: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(key)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str):
            strings.append(node.replace("$$", ""))

    walk(compose_raw())
    refs: dict[str, str | None] = {}
    for m in (m for text in strings for m in _BRACED.finditer(text)):
        default = m["arg"] if m["op"] in (":-", "-") else None
        if m["name"] in refs and refs[m["name"]] != default:
            raise AssertionError(
                f"${{{m['name']}}} has two defaults in docker-compose.yml: "
                f"{refs[m['name']]!r} and {default!r}"
            )
        refs[m["name"]] = default
    return refs


def passthrough_vars() -> dict[str, set[str]]:
    """Environment keys with no value: compose passes them on only when set (.env or shell)."""
    return {
        name: {key for key, value in environment(name).items() if value is None}
        for name in compose_raw()["services"]
        if isinstance(compose_raw()["services"][name].get("environment"), dict)
    }


def parse_env_example() -> tuple[dict[str, str], set[str], list[str]]:
    """(active NAME=value lines, NAME=... lines commented out, all lines)."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    active: dict[str, str] = {}
    commented: set[str] = set()
    for line in lines:
        if m := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            assert m[1] not in active, f".env.example defines {m[1]} twice"
            active[m[1]] = m[2]
        elif m := re.fullmatch(r"#\s?([A-Z][A-Z0-9_]*)=.*", line):
            commented.add(m[1])
    return active, commented, lines


def memory_bytes(value: str | int) -> int:
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", str(value).strip().lower())
    assert m, f"unreadable memory size {value!r}"
    return int(float(m[1]) * 1024 ** "bkmg".index(m[2] or "b"))


def settings_env_vars(cls: type[BaseSettings]) -> set[str]:
    """The environment variable names a pydantic-settings class reads (its validation aliases)."""
    assert cls.model_config.get("env_prefix", "") == "", f"{cls.__name__}: env_prefix not handled"
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            # no alias: pydantic-settings reads the field name itself (case-insensitively)
            names.add((field.alias or field_name).upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            for choice in alias.choices:
                assert isinstance(choice, str), f"{cls.__name__}.{field_name}: path alias"
                names.add(choice.upper())
        elif isinstance(alias, AliasPath):
            raise AssertionError(f"{cls.__name__}.{field_name}: AliasPath is not an env var")
    return names


_OTEL_ENV_REF = re.compile(
    r"\$\{(?:env:)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
)


def otel_env_refs(text: str) -> dict[str, str | None]:
    """``${env:VAR}`` / ``${env:VAR:-default}`` references in a collector or Jaeger v2 config."""
    return {m["name"]: m["default"] for m in _OTEL_ENV_REF.finditer(text)}


def resolve_otel_config(path: Path, env: dict[str, Any]) -> dict[str, Any]:
    """Load a collector-style config the way the confmap env provider expands it."""

    def sub(m: re.Match[str]) -> str:
        value = env.get(m["name"])
        if value in (None, "") and m["default"] is not None:
            return m["default"]
        assert value is not None, f"{path.name}: ${{env:{m['name']}}} is not set by compose"
        return str(value)

    return yaml.safe_load(_OTEL_ENV_REF.sub(sub, path.read_text()))


def container_env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in environment(service).items() if v is not None}


def host_port(endpoint: str) -> tuple[str, int]:
    endpoint = re.sub(r"^[a-z]+://", "", str(endpoint)).rstrip("/")
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


def healthcheck_url(service: str) -> str:
    test = services()[service]["healthcheck"]["test"]
    urls = re.findall(r"https?://[^\s'\"]+", " ".join(test))
    assert len(urls) == 1, f"{service}: expected one URL in the healthcheck, got {urls}"
    return urls[0]


def require(path: Path, owner: str) -> None:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing ({owner})"


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
        assert services()[name]["build"]["dockerfile"] == f"{name}/Dockerfile"
    assert images, "no images found"
    for where, image in images.items():
        assert "@sha256:" in image or re.search(r":[^/:]+$", image), f"{where}: {image} untagged"
        tag = image.rsplit(":", 1)[-1]
        assert tag not in {"latest", "stable", "main", "master", "edge"}, f"{where}: {image}"
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{where}: {image} is not a full version"
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
        assert "/" in " ".join(test), f"{name}: the healthcheck must probe an endpoint"
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in hc, f"{name}: healthcheck.{key} missing"


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
        assert svc.get("user") in (None,), f"{name}: the image's own non-root user is used"
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
        assert environment(name)["DATA_DIR"] == "/data"
        volume = name.split("-")[0] if name != "api-gateway" else "gateway"
        assert f"{volume}-data:/data" in services()[name]["volumes"], name
    command = services()["prometheus"]["command"]
    assert "--storage.tsdb.path=/prometheus" in command
    assert "prometheus-data:/prometheus" in services()["prometheus"]["volumes"]
    assert "jaeger-data:/tmp" in services()["jaeger"]["volumes"]
    assert set(used) == declared, f"declared but unused volumes: {declared - set(used)}"


def test_memory_limits_keep_the_stack_under_one_gib() -> None:
    limits = {}
    for name, svc in services().items():
        resources = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert "memory" in resources, f"{name}: no memory limit"
        assert "cpus" in resources, f"{name}: no CPU limit"
        limits[name] = memory_bytes(resources["memory"])
    total = sum(limits.values())
    assert total < ONE_GIB, f"memory limits add up to {total / 2**20:.0f} MiB: {limits}"
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


# --- Dockerfiles ----------------------------------------------------------------------------


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


@pytest.mark.parametrize("name", sorted(PYTHON_SERVICES))
def test_dockerfile(name: str) -> None:
    svc = PYTHON_SERVICES[name]
    path = ROOT / svc.directory / "Dockerfile"
    steps = dockerfile_instructions(path)
    args = {}
    for keyword, rest in steps:
        if keyword == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args.setdefault(key, value)
    stages = [interpolate(rest.split()[0], args) for keyword, rest in steps if keyword == "FROM"]
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
    # exec-form CMD of this service's package, which exists with a __main__
    (cmd,) = [rest for k, rest in final_steps if k == "CMD"]
    assert json.loads(cmd) == ["python", "-m", svc.module], f"{path}: CMD {cmd}"
    assert not any(k == "ENTRYPOINT" for k, _ in final_steps)
    package = ROOT / svc.directory / svc.module
    assert (package / "__init__.py").is_file() and (package / "__main__.py").is_file()
    # the locked dependencies, in their own cached layer before the code
    builder = " ".join(f"{k} {r}" for k, r in steps[:final])
    assert "pyproject.toml uv.lock" in builder
    assert (ROOT / "uv.lock").is_file() and (ROOT / "pyproject.toml").is_file()
    assert re.search(r"uv==\$\{UV_VERSION\}", builder) and re.fullmatch(
        r"\d+\.\d+\.\d+", args["UV_VERSION"]
    ), "pin uv"
    installer = re.search(r"^UV_VERSION=(\S+)", INSTALLER.read_text(), re.M)
    assert installer and installer[1] == args["UV_VERSION"], "the same uv as the local install"
    runs = [rest for k, rest in steps[:final] if k == "RUN"]
    syncs = [m for rest in runs for m in re.findall(r"uv sync ([^&;|]*)", rest)]
    assert len(syncs) == 2, syncs
    # --locked: a uv.lock out of date with pyproject.toml fails the build (--frozen would
    # silently install the stale pins)
    assert all("--locked" in s and "--no-dev" in s and "--frozen" not in s for s in syncs), syncs
    assert "--no-install-project" in syncs[0]
    dep_layer = builder.index("--no-install-project")
    assert builder.index(f"COPY {svc.directory}/{svc.module}") > dep_layer
    assert builder.index("COPY servicekit") > dep_layer
    # only this service's package goes in
    for other in PYTHON_SERVICES.values():
        if other is not svc:
            assert other.module not in builder, f"{path} copies {other.module}"
    # the image's defaults match compose
    assert f"{svc.port_var}={svc.port}" in env_text and "HOST=0.0.0.0" in env_text
    assert f"EXPOSE {svc.port}" in " ".join(f"{k} {r}" for k, r in final_steps)


def test_the_four_dockerfiles_differ_only_by_service() -> None:
    def normalised(svc: PythonService) -> str:
        text = (ROOT / svc.directory / "Dockerfile").read_text()
        for old, new in (
            (svc.module, "MODULE"),
            (svc.directory, "DIR"),
            (svc.port_var, "PORTVAR"),
            (str(svc.port), "PORT"),
        ):
            text = text.replace(old, new)
        return text

    texts = {name: normalised(svc) for name, svc in PYTHON_SERVICES.items()}
    reference = texts["api-gateway"]
    for name, text in texts.items():
        assert text == reference, f"{name}/Dockerfile drifted from api-gateway/Dockerfile"


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
    for svc in PYTHON_SERVICES.values():
        for keyword, rest in dockerfile_instructions(ROOT / svc.directory / "Dockerfile"):
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
