"""The chart's NetworkPolicies, Kafka and OpenSearch security settings, volumes and sizing.

Offline, like test_helm_chart.py: ``helm template``, then the rendered policies evaluated as
a NetworkPolicy engine would (a flow is allowed when the source's egress and the target's
ingress both allow it), and the security settings loaded by the real Jaeger binary. The
cluster tier (tests/cluster/) installs the chart for real.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicekit.catalog import SERVICES
from stackctl.stack import binary_paths
from tests.scale_out.test_helm_chart import CHART, RELEASE, helm, render

WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")
# A Pod outside the release, in the same namespace, and a destination outside the cluster.
STRANGER = "stranger"
OUTSIDE = "outside"
GATEWAY, GW_COLLECTOR, AGENT, JAEGER = "api-gateway", "gateway", "agent", "jaeger"
BACKENDS = [s.name for s in SERVICES if s.name != GATEWAY]
PORT = {s.name: s.default_port for s in SERVICES}


def pods(docs: list[dict]) -> dict[str, dict]:
    """Component name -> {labels, ports (TCP container ports)} of every workload rendered."""
    found = {}
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            template = doc["spec"]["template"]
            ports = {p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]}
            labels = template["metadata"]["labels"]
            found[labels["app.kubernetes.io/name"]] = {"labels": labels, "ports": ports}
    return found


def selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"unexpected selector {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def peer_matches(peer: dict, labels: dict | None) -> bool:
    """A NetworkPolicy peer against a Pod of this namespace (labels) or OUTSIDE (None)."""
    if "ipBlock" in peer:
        return labels is None
    if "namespaceSelector" in peer:
        return False  # another namespace (the cluster's DNS): none of the Pods modelled here
    return labels is not None and selects(peer["podSelector"], labels)


def rule_allows(rule: dict, key: str, labels: dict | None, port: int) -> bool:
    ports = rule.get("ports")
    if ports is not None and not any(p.get("port") == port for p in ports):
        return False
    peers = rule.get(key)
    return peers is None or any(peer_matches(p, labels) for p in peers)


def direction_allows(policies: list[dict], own: dict | None, kind: str, peer, port) -> bool:
    """Does traffic of this kind (Ingress/Egress) pass for a Pod with labels ``own``?"""
    if own is None:
        return True  # outside the release: no policy of the chart applies
    selecting = [p for p in policies if selects(p["spec"]["podSelector"], own)]
    selecting = [p for p in selecting if kind in p["spec"]["policyTypes"]]
    if not selecting:
        return True
    key, rules = ("from", "ingress") if kind == "Ingress" else ("to", "egress")
    return any(rule_allows(r, key, peer, port) for p in selecting for r in p["spec"].get(rules, []))


def allowed_flows(docs: list[dict]) -> set[tuple[str, str, int]]:
    """Every (source, target, port) the policies allow between the release's Pods, a stranger
    Pod of the namespace and the outside (each of whose ports is the target's listening one)."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    found = pods(docs)
    labelled = {name: p["labels"] for name, p in found.items()}
    labelled[STRANGER] = {"app.kubernetes.io/name": STRANGER}
    flows = set()
    for source, source_labels in [*labelled.items(), (OUTSIDE, None)]:
        for target, pod in found.items():
            for port in pod["ports"]:
                if source == target:
                    continue
                out = direction_allows(policies, source_labels, "Egress", pod["labels"], port)
                into = direction_allows(policies, pod["labels"], "Ingress", source_labels, port)
                if out and into:
                    flows.add((source, target, port))
    return flows


def outside_flows(docs: list[dict], source: str) -> set[int]:
    """The ports ``source`` may send to outside the cluster."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    labels = pods(docs)[source]["labels"]
    candidates = {53, 443, 5432, 5433, 9092, 9093, 9200, 9443, 8080}
    return {p for p in candidates if direction_allows(policies, labels, "Egress", None, p)}


def pipeline_flows(kafka: bool = False) -> set[tuple[str, str, int]]:
    """What the stack needs between its own Pods, written out once here."""
    flows = {(GATEWAY, name, PORT[name]) for name in BACKENDS}
    flows |= {(s.name, AGENT, port) for s in SERVICES for port in (4317, 4318)}
    flows |= {(AGENT, GW_COLLECTOR, 4317)}
    if kafka:
        flows |= {(GW_COLLECTOR, "jaeger-kafka-writer", 4317)}
    else:
        flows |= {(GW_COLLECTOR, JAEGER, 4317)}
    # the entry point: anyone may call it by default (networkPolicy.gatewayFrom)
    flows |= {(src, GATEWAY, PORT[GATEWAY]) for src in (STRANGER, OUTSIDE)}
    return flows


@pytest.mark.parametrize(
    ("variant", "sets", "extra"),
    [
        ("default", (), {(JAEGER, "opensearch", 9200)}),
        (
            "postgresql",
            ("postgresql.enabled=true", "service.replicas=2"),
            {(JAEGER, "opensearch", 9200)} | {(s.name, "postgresql", 5432) for s in SERVICES},
        ),
        ("badger", ("storage=badger",), set()),
        (
            "kafka",
            ("kafka.enabled=true", "kafka.brokers={k-0:9093}"),
            {(JAEGER, "opensearch", 9200)},
        ),
    ],
)
def test_only_the_flows_the_stack_needs_are_allowed(variant: str, sets: tuple, extra: set) -> None:
    """OpenSearch from Jaeger only, Jaeger's OTLP from the gateways only, its query API from
    nobody, the internal services from api-gateway only, PostgreSQL from the services only."""
    docs = render(*sets)
    expected = pipeline_flows(kafka=variant == "kafka") | extra
    assert allowed_flows(docs) == expected
    # and every Pod of the release is under the default deny
    [deny] = [d for d in docs if d["metadata"]["name"] == f"{RELEASE}-default-deny"]
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    for name, pod in pods(docs).items():
        assert selects(deny["spec"]["podSelector"], pod["labels"]), name


def test_nothing_leaves_for_the_outside_but_what_is_configured() -> None:
    default = render()
    for name in pods(default):
        assert outside_flows(default, name) == set(), f"{name} may send outside"
    external = render(
        "opensearch.deploy=false",
        "opensearch.url=https://search.example:9443",
        "database.url=postgresql://u:p@db.example:5433/orders",
        "kafka.enabled=true",
        "kafka.brokers={k-0.example:9093,k-1.example:9093}",
    )
    assert outside_flows(external, JAEGER) == {9443, 9093}
    assert outside_flows(external, "jaeger-kafka-writer") == {9093}
    for spec in SERVICES:
        assert outside_flows(external, spec.name) == {5433}
    assert outside_flows(external, GW_COLLECTOR) == set()
    https_default = render("opensearch.deploy=false", "opensearch.url=https://search.example")
    assert outside_flows(https_default, JAEGER) == {443}


def test_named_peers_open_the_query_api_and_restrict_the_entry_point() -> None:
    peer = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": STRANGER}}}
    values = {"networkPolicy": {"enabled": True, "queryFrom": [peer], "gatewayFrom": [peer]}}
    docs = render_values(values)
    flows = allowed_flows(docs)
    assert {(STRANGER, JAEGER, 16686), (STRANGER, JAEGER, 16685)} <= flows
    assert (STRANGER, GATEWAY, PORT[GATEWAY]) in flows
    assert (OUTSIDE, GATEWAY, PORT[GATEWAY]) not in flows
    assert (OUTSIDE, JAEGER, 16686) not in flows


def test_the_switch_turns_them_off() -> None:
    docs = render("networkPolicy.enabled=false")
    assert not [d for d in docs if d["kind"] == "NetworkPolicy"]


def render_values(values: dict[str, Any]) -> list[dict]:
    """Render with a values file (lists of objects cannot be given with --set)."""
    path = Path(subprocess.check_output(["mktemp", "--suffix=.yaml"], text=True).strip())
    try:
        path.write_text(yaml.safe_dump(values))
        result = helm("template", RELEASE, str(CHART), "--namespace", "shop", "-f", str(path))
    finally:
        path.unlink()
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# --- Kafka TLS and SASL, OpenSearch credentials and TLS -----------------------------------

KAFKA = ("kafka.enabled=true", "kafka.brokers={k-0:9093}")


def configmap(docs: list[dict], component: str) -> dict[str, str]:
    [doc] = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{RELEASE}-{component}"
    ]
    return doc["data"]


def container(docs: list[dict], component: str) -> dict:
    [doc] = [
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{RELEASE}-{component}"
    ]
    [c] = doc["spec"]["template"]["spec"]["containers"]
    return c


def jaeger_validate(data: dict[str, str], tmp_path: Path, env: dict[str, str]) -> str:
    """Run the real Jaeger's ``validate`` on the ConfigMap's files, merged as the Pod does."""
    args = [str(binary_paths()["JAEGER"]), "validate"]
    for key in ("config.yaml", "security.yaml"):
        if key in data:
            (tmp_path / key).write_text(data[key])
            args.append(f"--config={tmp_path / key}")
    result = subprocess.run(
        args, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_kafka_speaks_tls_by_default_and_plaintext_only_when_asked(tmp_path: Path) -> None:
    docs = render(*KAFKA)
    for component, section in (("jaeger-kafka-writer", "exporters"), (JAEGER, "receivers")):
        security = yaml.safe_load(configmap(docs, component)["security.yaml"])
        assert security == {section: {"kafka": {"tls": {"insecure": False}}}}
        assert "--config=/etc/jaeger/security.yaml" in container(docs, component)["args"]
    plain = render(*KAFKA, "kafka.tls.enabled=false")
    assert "security.yaml" not in configmap(plain, "jaeger-kafka-writer")
    assert container(plain, "jaeger-kafka-writer")["args"] == ["--config=/etc/jaeger/config.yaml"]


def test_kafka_mutual_tls_and_sasl_from_secrets_load_in_jaeger(tmp_path: Path) -> None:
    docs = render(
        *KAFKA,
        "kafka.tls.existingSecret=kafka-ca",
        "kafka.tls.clientCertificate=true",
        "kafka.tls.serverName=kafka.example",
        "kafka.sasl.enabled=true",
        "kafka.sasl.mechanism=SCRAM-SHA-256",
        "kafka.sasl.existingSecret=kafka-user",
    )
    for component, section in (("jaeger-kafka-writer", "exporters"), (JAEGER, "receivers")):
        data = configmap(docs, component)
        kafka = yaml.safe_load(data["security.yaml"])[section]["kafka"]
        assert kafka["tls"] == {
            "insecure": False,
            "ca_file": "/etc/kafka-tls/ca.crt",
            "cert_file": "/etc/kafka-tls/tls.crt",
            "key_file": "/etc/kafka-tls/tls.key",
            "server_name_override": "kafka.example",
        }
        assert kafka["auth"]["sasl"]["mechanism"] == "SCRAM-SHA-256"
        c = container(docs, component)
        env = {e["name"]: e for e in c["env"]}
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "kafka-user",
            "key": "password",
        }
        assert "value" not in env["KAFKA_SASL_PASSWORD"], "the password is never in the manifest"
        assert {"name": "kafka-tls", "mountPath": "/etc/kafka-tls", "readOnly": True} in c[
            "volumeMounts"
        ]
        run = {"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}
        jaeger_validate(data, tmp_path, {**run, "JAEGER_RECEIVERS": "[kafka]"})


@pytest.mark.parametrize(
    ("sets", "error"),
    [
        (("kafka.sasl.enabled=true",), "kafka.sasl.existingSecret"),
        (
            (
                "kafka.sasl.enabled=true",
                "kafka.sasl.existingSecret=s",
                "kafka.sasl.mechanism=PLAIN",
                "kafka.tls.enabled=false",
            ),
            "PLAIN",
        ),
        (("kafka.sasl.enabled=true", "kafka.sasl.mechanism=GSSAPI"), "mechanism"),
    ],
)
def test_unsafe_or_incomplete_kafka_settings_are_refused(sets: tuple, error: str) -> None:
    result = helm("template", RELEASE, str(CHART), *(f"--set={s}" for s in (*KAFKA, *sets)))
    assert result.returncode != 0 and error in result.stderr, result.stderr


def test_external_opensearch_credentials_and_ca_load_in_jaeger(tmp_path: Path) -> None:
    docs = render(
        "opensearch.deploy=false",
        "opensearch.url=https://search.example:9200",
        "opensearch.auth.existingSecret=search-user",
        "opensearch.tls.caSecret=search-ca",
    )
    data = configmap(docs, JAEGER)
    store = yaml.safe_load(data["security.yaml"])["extensions"]["jaeger_storage"]["backends"]
    opensearch = store["opensearch_store"]["opensearch"]
    assert opensearch["tls"] == {"insecure": False, "ca_file": "/etc/opensearch-tls/ca.crt"}
    assert set(opensearch["auth"]["basic"]) == {"username", "password"}
    env = {e["name"]: e for e in container(docs, JAEGER)["env"]}
    assert env["OPENSEARCH_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "search-user"
    jaeger_validate(data, tmp_path, {"OPENSEARCH_USERNAME": "u", "OPENSEARCH_PASSWORD": "p"})
    # the evaluation OpenSearch of the release takes none of it
    assert "security.yaml" not in configmap(render("opensearch.auth.existingSecret=x"), JAEGER)


# --- volumes and sizing -------------------------------------------------------------------

WRITABLE = ("emptyDir", "persistentVolumeClaim")


@pytest.mark.parametrize(
    "sets", [(), ("storage=badger",), ("postgresql.enabled=true", "service.replicas=2")]
)
def test_every_pod_writing_a_volume_sets_an_fs_group(sets: tuple) -> None:
    """Non-root Pods on a root-owned volume fail (Jaeger: mkdir /badger/keys: permission
    denied): the kubelet makes a volume group-writable for the Pod's fsGroup."""
    for doc in render(*sets):
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        spec = doc["spec"]["template"]["spec"]
        writable = [v for v in spec.get("volumes", []) if set(v) & set(WRITABLE)]
        writable += doc["spec"].get("volumeClaimTemplates", [])
        if writable:
            context = spec["securityContext"]
            assert context.get("fsGroup") == context["runAsGroup"], doc["metadata"]["name"]


def cpu_millis(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


@pytest.mark.parametrize(
    "sets", [(), ("postgresql.enabled=true", "service.replicas=2"), KAFKA, ("storage=badger",)]
)
def test_the_requests_fit_a_two_cpu_node_during_a_rolling_update(sets: tuple) -> None:
    """The sum of CPU requests, plus one surge Pod of the largest Deployment being rolled,
    leaves room on a 2-CPU node for its own system (kubelet, runtime, DNS): at most 1.5 CPU."""
    total, largest = 0, 0
    for doc in render(*sets):
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        [c] = doc["spec"]["template"]["spec"]["containers"]
        cpu = cpu_millis(str(c["resources"]["requests"]["cpu"]))
        total += cpu * doc["spec"].get("replicas", 1)
        if doc["kind"] == "Deployment":
            largest = max(largest, cpu)
    assert total + largest <= 1500, f"{total} m requested + {largest} m surge"


@pytest.mark.parametrize(("delete", "policy"), [(False, "Retain"), (True, "Delete")])
def test_volumes_outlive_the_release_unless_asked(delete: bool, policy: str) -> None:
    """``helm uninstall`` keeps the StatefulSets' claims and Badger's by default, and deletes
    them with ``volumes.deleteWithRelease``."""
    sets = ("postgresql.enabled=true", f"volumes.deleteWithRelease={str(delete).lower()}")
    for doc in render(*sets):
        if doc["kind"] == "StatefulSet":
            retention = doc["spec"]["persistentVolumeClaimRetentionPolicy"]
            assert retention == {"whenDeleted": policy, "whenScaled": "Retain"}
    [claim] = [d for d in render("storage=badger", sets[1]) if d["kind"] == "PersistentVolumeClaim"]
    kept = claim["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep"
    assert kept is not delete
