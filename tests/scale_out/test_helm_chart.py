"""The Helm chart (deploy/helm/otel-order-stack), rendered and validated offline and strictly.

``helm lint --strict`` and ``helm template`` (helm v4, built by the installer), then every
rendered object against the Kubernetes 1.30 and 1.37 schemas that the PyPI package
kubernetes-validate ships, twice: in process (unknown fields refused) and with kubeconform
``-strict``, which needs those schemas with their shared ``$defs`` inlined into each file.
No cluster runs here: what only a cluster can show is listed in docs/scale-out.md.
"""

from __future__ import annotations

import json
import re
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from servicekit.catalog import SERVICES
from stackctl.stack import ROOT, binary_paths

CHART = ROOT / "deploy" / "helm" / "otel-order-stack"
K8S_VERSIONS = ("1.30.0", "1.37.0")
# The stack's own files each ConfigMap must hold, byte for byte.
CONFIGS = {
    "agent": ROOT / "otel-collector" / "scale-out" / "agent.yaml",
    "gateway": ROOT / "otel-collector" / "scale-out" / "gateway.yaml",
}
JAEGER_CONFIGS = {
    "opensearch": ROOT / "jaeger" / "scale-out" / "config-opensearch.yaml",
    "badger": ROOT / "jaeger" / "config.yaml",
}
KAFKA_WRITER = ROOT / "jaeger" / "scale-out" / "config-kafka-writer.yaml"
RELEASE = "oos"


def tool(name: str) -> Path:
    path = binary_paths()[name]
    assert path.exists(), f"{path} missing: run scripts/install_backends.sh --chart-tools"
    return path


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("HELM")), *args], capture_output=True, text=True, timeout=120, check=False
    )


def render(*sets: str) -> list[dict[str, Any]]:
    args = [f"--set={s}" for s in sets]
    result = helm("template", RELEASE, str(CHART), "--namespace", "shop", *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[dict], kind: str, component: str) -> dict:
    name = f"{RELEASE}-{component}"
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def env_entries(workload: dict) -> dict[str, dict]:
    """Name -> the container's env entry (``value`` or ``valueFrom``)."""
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}


def env_of(workload: dict) -> dict[str, str]:
    """The plain values of the container's env (entries taken from a Secret are left out)."""
    return {name: e["value"] for name, e in env_entries(workload).items() if "value" in e}


DATABASE_URL = "postgresql://orders:s3cret@db.example:5432/orders"
VARIANTS = {
    "default": (),
    "badger": ("storage=badger",),
    "external-opensearch": ("opensearch.deploy=false", "opensearch.url=http://search:9200"),
    "sampling": ("sampling.headPercent=50", "sampling.baselinePercent=25"),
    "kafka": ("kafka.enabled=true", "kafka.brokers={kafka-0:9092,kafka-1:9092}"),
    "kafka-secured": (
        "kafka.enabled=true",
        "kafka.brokers={kafka-0:9093}",
        "kafka.tls.existingSecret=kafka-ca",
        "kafka.tls.clientCertificate=true",
        "kafka.sasl.enabled=true",
        "kafka.sasl.existingSecret=kafka-user",
    ),
    "external-opensearch-secured": (
        "opensearch.deploy=false",
        "opensearch.url=https://search:9200",
        "opensearch.auth.existingSecret=search-user",
        "opensearch.tls.caSecret=search-ca",
    ),
    "no-network-policy": ("networkPolicy.enabled=false",),
    "postgresql": ("postgresql.enabled=true", "service.replicas=3"),
    "database-url": (f"database.url={DATABASE_URL}", "service.replicas=2"),
    "existing-secret": (
        "database.existingSecret=shop-db",
        "database.existingSecretKey=url",
        "service.replicas=4",
    ),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_strict(variant: str) -> None:
    result = helm("lint", "--strict", str(CHART), *(f"--set={s}" for s in VARIANTS[variant]))
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_come_from_the_catalog_with_probes_resources_and_lockdown() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["services"] == [
        {"name": s.name, "envPrefix": s.env_prefix, "port": s.default_port} for s in SERVICES
    ], "values.yaml services: servicekit/catalog.py is the source"
    docs = render()
    for spec in SERVICES:
        deployment = find(docs, "Deployment", spec.name)
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["ports"] == [{"name": "http", "containerPort": spec.default_port}]
        assert env_of(deployment)[spec.port_variable] == str(spec.default_port)
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["resources"]["limits"]["memory"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert env_of(deployment)["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{RELEASE}-agent:4317"
    gateway_env = env_of(find(docs, "Deployment", "api-gateway"))
    assert gateway_env["ORDER_URL"] == f"http://{RELEASE}-order-service:8082"


def test_configmaps_hold_the_stacks_own_files() -> None:
    for storage, jaeger_config in JAEGER_CONFIGS.items():
        docs = render(f"storage={storage}")
        for component, path in {**CONFIGS, "jaeger": jaeger_config}.items():
            data = find(docs, "ConfigMap", component)["data"]["config.yaml"]
            assert data == path.read_text(), f"{component}: not {path.relative_to(ROOT)}"
    writer = find(render(*VARIANTS["kafka"]), "ConfigMap", "jaeger-kafka-writer")
    assert writer["data"]["config.yaml"] == KAFKA_WRITER.read_text()


def test_with_kafka_the_gateways_write_to_the_topic_and_jaeger_reads_it() -> None:
    docs = render(*VARIANTS["kafka"])
    writer = find(docs, "Deployment", "jaeger-kafka-writer")
    brokers = "[kafka-0:9092, kafka-1:9092]"
    assert env_of(writer)["KAFKA_BROKERS"] == brokers
    gateway = env_of(find(docs, "Deployment", "gateway"))
    assert gateway["OTELCOL_JAEGER_ENDPOINT"] == f"{RELEASE}-jaeger-kafka-writer:4317"
    jaeger = env_of(find(docs, "Deployment", "jaeger"))
    assert (jaeger["JAEGER_RECEIVERS"], jaeger["KAFKA_BROKERS"]) == ("[kafka]", brokers)
    assert not [d for d in render() if "kafka" in d["metadata"]["name"]]


def test_agents_are_a_daemonset_routing_to_the_headless_gateway_service() -> None:
    docs = render()
    agent = find(docs, "DaemonSet", "agent")
    headless = find(docs, "Service", "gateway-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert find(docs, "Service", "agent")["spec"]["internalTrafficPolicy"] == "Local"
    resolver = yaml.safe_load(env_of(agent)["OTELCOL_GATEWAY_RESOLVER"])
    hostname = f"{RELEASE}-gateway-headless.shop.svc.cluster.local"
    assert resolver == {"dns": {"hostname": hostname, "port": "4317"}}
    assert find(docs, "Deployment", "gateway")["spec"]["replicas"] == 2


def test_the_agent_config_loads_with_the_charts_dns_resolver(tmp_path: Path) -> None:
    """The scale-out collector build accepts agent.yaml with the resolver the chart sets."""
    resolver = env_of(find(render(), "DaemonSet", "agent"))["OTELCOL_GATEWAY_RESOLVER"]
    result = subprocess.run(
        [str(tool("OTELCOL_SCALE_OUT")), "validate", "--config", str(CONFIGS["agent"])],
        env={"OTELCOL_GATEWAY_RESOLVER": resolver, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_values_choose_storage_and_sampling() -> None:
    docs = render(*VARIANTS["sampling"])
    gateway = env_of(find(docs, "Deployment", "gateway"))
    assert gateway["TAIL_BASELINE_PERCENT"] == "25"
    assert env_of(find(docs, "Deployment", "order-service"))["OTEL_TRACES_SAMPLER_ARG"] == "0.5"
    assert find(docs, "StatefulSet", "opensearch")
    jaeger = env_of(find(docs, "Deployment", "jaeger"))
    assert jaeger["OPENSEARCH_URL"] == f"http://{RELEASE}-opensearch:9200"

    badger = render("storage=badger")
    assert not [d for d in badger if d["kind"] == "StatefulSet"]
    assert find(badger, "Deployment", "jaeger")["spec"]["replicas"] == 1
    assert env_of(find(badger, "Deployment", "jaeger"))["JAEGER_BADGER_DIR"] == "/badger"
    assert find(badger, "PersistentVolumeClaim", "jaeger")

    external = render(*VARIANTS["external-opensearch"])
    assert not [d for d in external if d["kind"] == "StatefulSet"]
    assert env_of(find(external, "Deployment", "jaeger"))["OPENSEARCH_URL"] == "http://search:9200"


@pytest.mark.parametrize(
    ("sets", "error"),
    [
        (("storage=cassandra",), "storage"),
        (("sampling.baselinePercent=150",), "baselinePercent"),
        (("opensearch.deploy=false",), "opensearch.url is required"),
        (("kafka.enabled=true",), "kafka.brokers is required"),
        (("kafka.enabled=true", "kafka.brokers={k:1}", "storage=badger"), "storage opensearch"),
        (("service.replicas=0",), "replicas"),
        (("database.url=mysql://a:b@h/db",), "database/url"),
        (
            ("postgresql.enabled=true", f"database.url={DATABASE_URL}"),
            "set only one of database.url, database.existingSecret and postgresql.enabled",
        ),
        (
            ("postgresql.enabled=true", "database.existingSecret=shop-db"),
            "set only one of",
        ),
        # 4 services x 7 replicas x 8 connections + 3 reserved = 227 > 200
        (("postgresql.enabled=true", "service.replicas=7"), "postgresql.maxConnections=200"),
    ],
)
def test_bad_values_are_refused_with_their_name(sets: tuple[str, ...], error: str) -> None:
    result = helm("template", RELEASE, str(CHART), *(f"--set={s}" for s in sets))
    assert result.returncode != 0 and error in result.stderr, result.stderr


# --- the services' database: replicas only with a shared one ---------------------------------

SQLITE_REASON = "needs a shared database"


def service_deployments(docs: list[dict]) -> list[dict]:
    return [find(docs, "Deployment", spec.name) for spec in SERVICES]


def volume_names(deployment: dict) -> set[str]:
    return {v["name"] for v in deployment["spec"]["template"]["spec"].get("volumes", [])}


@pytest.mark.parametrize(
    "sets",
    [
        ("service.replicas=3",),
        ("service.replicas=2",),
        ("service.replicas=3", "storage=badger"),
        ("service.replicas=2", "database.existingSecretKey=url"),  # a key alone is no database
    ],
)
def test_replicas_over_one_with_per_pod_sqlite_are_refused_with_the_reason(
    sets: tuple[str, ...],
) -> None:
    """Every Pod would keep its own SQLite files: its own stock, orders and idempotency keys."""
    result = helm("template", RELEASE, str(CHART), *(f"--set={s}" for s in sets))
    assert result.returncode != 0, "replicas > 1 with per-Pod SQLite must not render"
    assert SQLITE_REASON in result.stderr and "SQLite" in result.stderr, result.stderr
    assert "postgresql.enabled=true" in result.stderr, "the error names the way out"


def test_one_replica_keeps_sqlite_on_a_per_pod_volume() -> None:
    for deployment in service_deployments(render()):
        assert deployment["spec"]["replicas"] == 1
        assert "data" in volume_names(deployment)
        assert env_of(deployment)["DATA_DIR"] == "/data"
        assert "DATABASE_URL" not in env_entries(deployment)
    names = {d["metadata"]["name"] for d in render()}
    assert not names & {f"{RELEASE}-database", f"{RELEASE}-postgresql"}, "no database objects"


@pytest.mark.parametrize(
    ("variant", "secret", "key", "replicas"),
    [
        ("postgresql", f"{RELEASE}-database", "DATABASE_URL", 3),
        ("database-url", f"{RELEASE}-database", "DATABASE_URL", 2),
        ("existing-secret", "shop-db", "url", 4),
    ],
)
def test_with_a_database_replicas_share_it_through_a_secret(
    variant: str, secret: str, key: str, replicas: int
) -> None:
    docs = render(*VARIANTS[variant])
    for deployment in service_deployments(docs):
        assert deployment["spec"]["replicas"] == replicas
        assert "data" not in volume_names(deployment), "no per-Pod SQLite volume"
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert "/data" not in {m["mountPath"] for m in container["volumeMounts"]}
        entries = env_entries(deployment)
        assert "DATA_DIR" not in entries
        assert entries["DATABASE_URL"] == {
            "name": "DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
        }
        assert env_of(deployment)["DATABASE_POOL_SIZE"] == "8"
    # the URL and its password are in the Secret only, never in a workload or ConfigMap
    secrets = [d for d in docs if d["kind"] == "Secret"]
    if variant == "existing-secret":
        assert not secrets, "the operator's Secret is used, none is made"
    else:
        [made] = secrets
        assert made["metadata"]["name"] == secret and key in made["stringData"]
        url = made["stringData"][key]
        password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        others = yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"])
        assert url not in others and password not in others
    if variant == "database-url":
        assert url == DATABASE_URL


def test_the_evaluation_postgresql_is_a_non_root_statefulset_with_a_volume() -> None:
    docs = render(*VARIANTS["postgresql"])
    statefulset = find(docs, "StatefulSet", "postgresql")
    pod = statefulset["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert statefulset["spec"]["replicas"] == 1
    assert (
        container["image"]
        == yaml.safe_load((CHART / "values.yaml").read_text())["images"]["postgresql"]
    )
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0 and pod["securityContext"]["fsGroup"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/var/lib/postgresql/data"
    assert "/var/run/postgresql" in mounts.values()
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe[0] == "pg_isready" and "orders" in probe
    limits = container["resources"]["limits"]
    assert limits["memory"] == "512Mi", "fits a small node beside the stack"
    env = env_entries(statefulset)
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{RELEASE}-database",
        "key": "POSTGRES_PASSWORD",
    }
    assert env_of(statefulset)["POSTGRES_USER"] == "orders"
    assert env_of(statefulset)["POSTGRES_DB"] == "orders"
    assert "max_connections=200" in container["args"]
    service = find(docs, "Service", "postgresql")
    assert service["spec"]["ports"] == [
        {"name": "postgresql", "port": 5432, "targetPort": "postgresql"}
    ]
    # the services' URL points at it, with the generated password
    secret = find(docs, "Secret", "database")["stringData"]
    password = secret["POSTGRES_PASSWORD"]
    assert len(password) >= 32 and password.isalnum()
    expected = f"postgresql://orders:{password}@{RELEASE}-postgresql:5432/orders"
    assert secret["DATABASE_URL"] == expected
    # a new install gets a new password (helm template has no cluster to keep the old one from)
    again = find(render(*VARIANTS["postgresql"]), "Secret", "database")["stringData"]
    assert again["POSTGRES_PASSWORD"] != password


@pytest.mark.parametrize(
    ("password", "encoded"),
    [("pa ss@w:rd/1", "pa%20ss%40w%3Ard%2F1"), ("plain", "plain"), ("a+b%c", "a%2Bb%25c")],
)
def test_a_given_postgresql_password_is_percent_encoded_in_the_url(
    password: str, encoded: str
) -> None:
    docs = render(*VARIANTS["postgresql"], f"postgresql.password={password}")
    secret = find(docs, "Secret", "database")["stringData"]
    assert secret["POSTGRES_PASSWORD"] == password
    assert (
        secret["DATABASE_URL"] == f"postgresql://orders:{encoded}@{RELEASE}-postgresql:5432/orders"
    )


# --- strict validation against the Kubernetes schemas ------------------------------------------


def schema_dir(version: str) -> Path:
    schemas = Path(str(files("kubernetes_validate"))) / "kubernetes-json-schema"
    return schemas / f"v{version}-local-strict"


def inlined_schemas(docs: list[dict], version: str, out: Path) -> Path:
    """The schemas of these objects' kinds, each with the ``$defs`` it reaches copied in and its
    references made local, as kubeconform needs (it does not resolve kubernetes-validate's
    shared _definitions.json). Named as kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}``."""
    source = schema_dir(version)
    defs = json.loads((source / "_definitions.json").read_text())["$defs"]
    shared = re.compile(r'"(?:/api/_definitions\.json)?#/\$defs/([^"]+)"')
    target = out / version
    target.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"])
        name = f"{doc['kind'].lower()}-{group_version}.json"
        if (target / name).exists():
            continue
        text = (source / name).read_text()
        needed, todo = set(), set(shared.findall(text))
        while todo:
            ref = todo.pop()
            needed.add(ref)
            todo |= set(shared.findall(json.dumps(defs[ref]))) - needed
        schema = json.loads(shared.sub(r'"#/$defs/\1"', text))
        schema["$defs"] = {
            ref: json.loads(shared.sub(r'"#/$defs/\1"', json.dumps(defs[ref]))) for ref in needed
        }
        (target / name).write_text(json.dumps(schema))
    return target


def kubeconform(docs: list[dict], schemas: Path) -> subprocess.CompletedProcess:
    location = str(schemas) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    return subprocess.run(
        [str(tool("KUBECONFORM")), "-strict", "-summary", "-schema-location", location, "-"],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def schema_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("k8s-schemas")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_matches_the_kubernetes_schemas_strictly(
    variant: str, version: str, schema_root: Path
) -> None:
    docs = render(*VARIANTS[variant])
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    result = kubeconform(docs, inlined_schemas(docs, version, schema_root))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Valid: {len(docs)}" in result.stdout, result.stdout


def test_the_validators_refuse_an_unknown_field(schema_root: Path) -> None:
    """Neither check is vacuous: one misspelt field in one Deployment fails both."""
    docs = render()
    deployment = find(docs, "Deployment", "gateway")
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)
    schemas = inlined_schemas(docs, K8S_VERSIONS[0], schema_root)
    result = kubeconform(docs, schemas)
    assert result.returncode != 0 and "replica" in result.stdout, result.stdout
