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


def env_of(workload: dict) -> dict[str, str]:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container.get("env", [])}


VARIANTS = {
    "default": (),
    "badger": ("storage=badger",),
    "external-opensearch": ("opensearch.deploy=false", "opensearch.url=http://search:9200"),
    "sampling": ("sampling.headPercent=50", "sampling.baselinePercent=25"),
    "kafka": ("kafka.enabled=true", "kafka.brokers={kafka-0:9092,kafka-1:9092}"),
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
    ],
)
def test_bad_values_are_refused_with_their_name(sets: tuple[str, ...], error: str) -> None:
    result = helm("template", RELEASE, str(CHART), *(f"--set={s}" for s in sets))
    assert result.returncode != 0 and error in result.stderr, result.stderr


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
