"""The containerised stack as data, for the tests that check it: docker-compose.yml parsed and
interpolated the way Compose does (``${VAR:-default}``; keys are not interpolated), the
services' settings classes, .env.example, and the ``${env:VAR}`` references of the collector
and Jaeger configs. ``tests/unit/test_compose_static.py`` checks the files as text;
``tests/e2e/test_backend_configs.py`` runs the real binaries on them.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings

from servicekit.catalog import SERVICES, ServiceSpec
from servicekit.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
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


def installer_pin(name: str) -> str:
    """A release pinned in scripts/install_backends.sh (``NAME=value``), its one home."""
    m = re.search(rf"^{name}=(\S+)", INSTALLER.read_text(), re.M)
    assert m, f"scripts/install_backends.sh no longer sets {name}"
    return m[1]


COLLECTOR_VERSION = installer_pin("COLLECTOR_VERSION")
JAEGER_VERSION = installer_pin("JAEGER_VERSION")
# Jaeger v2 is released from the module github.com/jaegertracing/jaeger under v1.x tags.
JAEGER_MODULE_VERSION = installer_pin("JAEGER_MODULE_VERSION")
# The whole stack's memory limits stay under this: a small VM or laptop runs it beside its OS.
MEMORY_BUDGET = 1280 * 2**20
OTLP_EXPORTERS = ("otlp", "otlp_grpc")


def settings_class(spec: ServiceSpec) -> type[ServiceSettings]:
    """The settings class a service defines in ``<package>/app.py``."""
    module = importlib.import_module(f"{spec.package}.app")
    [cls] = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
    ]
    return cls


@dataclass(frozen=True)
class PythonService:
    """A catalog entry (servicekit/catalog.py) with what the compose checks ask of it."""

    spec: ServiceSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def directory(self) -> str:
        return self.spec.name

    @property
    def module(self) -> str:
        return self.spec.package

    @property
    def port_var(self) -> str:
        return self.spec.port_variable

    @property
    def port(self) -> int:
        return self.spec.default_port

    @property
    def settings(self) -> type[ServiceSettings]:
        return settings_class(self.spec)


PYTHON_SERVICES = {spec.name: PythonService(spec) for spec in SERVICES}
DATABASE = "postgres"  # the services' PostgreSQL
BACKENDS = (DATABASE, "otel-collector", "jaeger", "prometheus")
# Variables compose refuses to start without (``${VAR:?reason}``, no default): secrets, never
# written in the repository. The static checks interpolate with these sample values.
REQUIRED_SECRETS = {"POSTGRES_PASSWORD": "compose-model-password"}
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
    """The compose model after interpolation with ``env`` (the project's environment) and the
    required secrets' sample values (``env`` may override them)."""
    return interpolate_model(compose_raw(), {**REQUIRED_SECRETS, **env})


@cache
def compose() -> dict[str, Any]:
    """The compose model as Docker sees it with only the required secrets set (every default
    applies)."""
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
        if m["op"] == ":?" and m["name"] in REQUIRED_SECRETS:
            continue  # required, no default: see required_refs()
        default = m["arg"] if m["op"] in (":-", "-") else None
        if m["name"] in refs and refs[m["name"]] != default:
            raise AssertionError(
                f"${{{m['name']}}} has two defaults in docker-compose.yml: "
                f"{refs[m['name']]!r} and {default!r}"
            )
        refs[m["name"]] = default
    return refs


def required_refs() -> dict[str, set[str]]:
    """``${VAR:?reason}`` references of docker-compose.yml: name -> the reasons given."""
    refs: dict[str, set[str]] = {}
    for m in _BRACED.finditer(compose_text().replace("$$", "")):
        if m["op"] in (":?", "?"):
            refs.setdefault(m["name"], set()).add(m["arg"] or "")
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
