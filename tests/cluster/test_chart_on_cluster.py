"""The chart installed on a real single-node Kubernetes, checked as an operator would.

In file order on one cluster and one release (conftest.py): every Pod Ready and locked down
as the chart says; an order through the gateway reached with ``kubectl port-forward``, its
whole trace in Jaeger through the agent DaemonSet and the tail-sampling gateways, stored in
OpenSearch; ``helm upgrade`` rolls the gateways with a new policy, under which an error trace
is kept and a plain one is not; a gateway Pod deleted under load loses no kept trace;
``helm rollback``; ``helm uninstall`` leaves nothing; and the host is as it was found.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from servicekit.catalog import SERVICE_NAMES
from stackctl.orders import order_body
from stackctl.traces import fetch_trace, wait_for_trace
from tests.cluster.cluster import BRIDGE, Cluster, kubernetes_version
from tests.cluster.conftest import NAMESPACE, RELEASE, TEST_VALUES, pods, port_forward
from tests.cluster.host import HostState, run
from tests.cluster.images import CHART
from tests.order_trace_contract import ORDER_SPANS, check_order_trace, from_jaeger

# The images are built and the cluster started by the first test's fixtures: minutes cold.
pytestmark = pytest.mark.timeout(2400)
GATEWAY_SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=gateway"


def name(component: str) -> str:
    return f"{RELEASE}-{component}"


def test_every_pod_is_ready_on_a_node_of_the_pinned_release(cluster: Cluster, release) -> None:
    node = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    [info] = [n["status"]["nodeInfo"] for n in node]
    assert info["kubeletVersion"] == kubernetes_version()
    running = pods(cluster)
    components = {p["metadata"]["labels"]["app.kubernetes.io/name"] for p in running}
    assert components == {*SERVICE_NAMES, "agent", "gateway", "jaeger", "opensearch", "postgresql"}
    for pod in running:
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"]
        assert ready == "True", pod["metadata"]["name"]
    policies = cluster.kubectl("-n", NAMESPACE, "get", "networkpolicy", "-o", "name").stdout
    assert f"networkpolicy.networking.k8s.io/{name('default-deny')}" in policies.split()


def container_processes(cluster: Cluster) -> dict[str, int]:
    """Container name (``<pod>/<container>``) -> the host pid of its main process."""
    found = {}
    for line in cluster.ctr("tasks", "ls").stdout.splitlines()[1:]:
        task, pid = line.split()[:2]
        info = json.loads(cluster.ctr("containers", "info", task).stdout)
        labels = info.get("Labels", {})
        if labels.get("io.kubernetes.pod.namespace") == NAMESPACE and labels.get(
            "io.kubernetes.container.name"
        ):
            pod = labels["io.kubernetes.pod.name"]
            found[f"{pod}/{labels['io.kubernetes.container.name']}"] = int(pid)
    return found


def test_the_security_context_holds_in_the_running_containers(cluster: Cluster, release) -> None:
    """Non-root, a read-only root filesystem where the chart asks for one, and the volumes
    written by their non-root owners (a fresh volume is root's: fsGroup makes it theirs)."""
    processes = container_processes(cluster)
    assert len(processes) >= len(pods(cluster))
    for container, pid in processes.items():
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        uids = {int(u) for u in status["Uid"].split()}
        assert 0 not in uids, f"{container} runs as root"
        assert status["CapEff"].strip() == "0" * 16, f"{container} has capabilities"
        root = [
            line.split()
            for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
            if line.split()[4] == "/"
        ]
        read_only = "ro" in root[-1][5].split(",")
        locked = not container.startswith((name("opensearch"),))
        assert read_only == locked, f"{container}: root filesystem read-only {read_only}"
    # the StatefulSets wrote their local volumes (root-owned 0755 directories on the host)
    for component, group in (("opensearch", 1000), ("postgresql", 999)):
        claim = f"data-{name(component)}-0"
        volume = cluster.kubectl("-n", NAMESPACE, "get", "pvc", claim, "-o",
                                 "jsonpath={.spec.volumeName}").stdout  # fmt: skip
        path = cluster.run_dir / "volumes" / f"pv{volume.split('-')[-1]}"
        assert path.stat().st_gid == group, f"{component}'s volume is not its group's"
        written = [p for p in path.rglob("*") if p.is_file()]
        assert written and all(p.stat().st_uid == group for p in written[:50]), component


# Run in a service's container: connect, and say how it ended (its image has Python).
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("connected")
except socket.timeout:
    print("timeout")
except OSError as error:
    print(type(error).__name__)
"""


def probe(cluster: Cluster, host: str, port: int) -> str:
    deploy = f"deploy/{name('api-gateway')}"
    argv = ("-n", NAMESPACE, "exec", deploy, "--", "python", "-c", PROBE, host, str(port))
    return cluster.kubectl(*argv).stdout.strip()


def drops(cluster: Cluster) -> int:
    """Packets the tier's rule dropped on their way from the bridge to another interface."""
    out = run("iptables", "-t", "mangle", "-L", "FORWARD", "-v", "-x", "-n").stdout
    return sum(
        int(line.split()[0]) for line in out.splitlines() if BRIDGE in line and "DROP" in line
    )


def test_nothing_a_pod_sends_leaves_the_machine(cluster: Cluster, release) -> None:
    """The Pod network reaches the cluster (the agent's Service), and nothing beyond it: a
    connection to the machine's own default gateway is dropped at the bridge, not refused."""
    assert probe(cluster, name("agent"), 4318) == "connected"
    gateway = run("ip", "route", "show", "default").stdout.split()[2]
    before = drops(cluster)
    assert probe(cluster, gateway, 80) == "timeout"
    assert drops(cluster) > before


def place_order(gateway: str) -> dict:
    body = order_body()
    response = httpx.post(f"{gateway}/api/orders", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return response.json() | {"items": body["items"]}


def test_an_order_through_the_gateway_is_one_whole_trace_stored_in_opensearch(
    cluster: Cluster, release
) -> None:
    with (
        port_forward(cluster, f"svc/{name('api-gateway')}", 8080) as gateway,
        port_forward(cluster, f"svc/{name('jaeger')}", 16686) as jaeger,
    ):
        operations = frozenset(n for _, n in ORDER_SPANS)
        # A service Pod that started before its node's agent was ready may hold its OTLP/gRPC
        # channel in reconnect backoff (gRPC's: up to 2 min) and lose a first order's spans
        # (docs/scale-out.md): the first order waits until the stack delivers whole traces.
        warm_up = place_order(gateway)
        with contextlib.suppress(TimeoutError):
            wait_for_trace(jaeger, warm_up["traceId"], set(SERVICE_NAMES), operations, 150)
        order = place_order(gateway)
        trace = wait_for_trace(jaeger, order["traceId"], set(SERVICE_NAMES), operations, 60)
    quantity = sum(item["quantity"] for item in order["items"])
    check_order_trace(from_jaeger(trace), order["orderId"], quantity, "postgresql")
    with port_forward(cluster, f"svc/{name('opensearch')}", 9200) as opensearch:
        query = {"query": {"term": {"traceID": order["traceId"]}}, "size": 100}
        hits = httpx.post(f"{opensearch}/jaeger-jaeger-span-*/_search", json=query, timeout=30)
        hits.raise_for_status()
    assert hits.json()["hits"]["total"]["value"] == len(trace.spans)


def otlp_span(trace_id: str, error: bool) -> dict:
    """One server span of api-gateway in OTLP/JSON; ERROR status when ``error``."""
    now = time.time_ns()
    span = {
        "traceId": trace_id,
        "spanId": uuid.uuid4().hex[:16],
        "name": "POST /api/orders",
        "kind": 2,
        "startTimeUnixNano": str(now - 20_000_000),
        "endTimeUnixNano": str(now),
        "attributes": [{"key": "http.response.status_code", "value": {"intValue": "201"}}],
        "status": {"code": 2 if error else 1},
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "api-gateway"}}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}


def send_spans(agent: str, trace_ids: list[str], error: bool) -> None:
    with httpx.Client(timeout=10) as client:
        for trace_id in trace_ids:
            response = client.post(f"{agent}/v1/traces", json=otlp_span(trace_id, error))
            assert response.status_code == 200, response.text


def gateway_pods(cluster: Cluster) -> dict[str, dict]:
    """The gateway Pods that are not on their way out (Terminating)."""
    running = pods(cluster, GATEWAY_SELECTOR)
    return {p["metadata"]["name"]: p for p in running if not p["metadata"].get("deletionTimestamp")}


def wait_for_traces(jaeger: str, trace_ids: list[str], timeout: float) -> list[str]:
    """The trace ids Jaeger still lacks when they all arrived or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    missing = list(trace_ids)
    while missing and time.monotonic() < deadline:
        missing = [t for t in missing if fetch_trace(jaeger, t) is None]
        time.sleep(1)
    return missing


def test_an_upgrade_rolls_the_gateways_and_keeps_only_what_the_policy_keeps(
    cluster: Cluster, release
) -> None:
    before = gateway_pods(cluster)
    cluster.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--wait", "--timeout=10m",
        *(f"--set={v}" for v in TEST_VALUES), "--set=sampling.baselinePercent=0", timeout=700,
    )  # fmt: skip
    after = gateway_pods(cluster)
    assert not set(before) & set(after), "every gateway Pod was replaced"
    for pod in after.values():
        [container] = pod["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TAIL_BASELINE_PERCENT"] == "0"
    plain, failed = uuid.uuid4().hex, uuid.uuid4().hex
    [agent] = [p["metadata"]["name"] for p in pods(cluster, "app.kubernetes.io/name=agent")]
    with (
        port_forward(cluster, f"pod/{agent}", 4318) as agent_url,
        port_forward(cluster, f"svc/{name('jaeger')}", 16686) as jaeger,
    ):
        send_spans(agent_url, [plain], error=False)
        send_spans(agent_url, [failed], error=True)
        assert wait_for_traces(jaeger, [failed], timeout=240) == [], "the error trace is kept"
        # decided earlier than the error trace, on the same decision wait: dropped by then
        assert fetch_trace(jaeger, plain) is None, "baseline 0: a plain trace is dropped"


def test_a_gateway_pod_deleted_under_load_loses_no_kept_trace(cluster: Cluster, release) -> None:
    """Error traces (always kept) sent through the agent while a gateway Pod is deleted: the
    agent's ring follows the headless Service to the replacement, and every trace arrives."""
    [agent] = [p["metadata"]["name"] for p in pods(cluster, "app.kubernetes.io/name=agent")]
    victim = sorted(gateway_pods(cluster))[0]
    trace_ids = [uuid.uuid4().hex for _ in range(300)]
    with (
        port_forward(cluster, f"pod/{agent}", 4318) as agent_url,
        port_forward(cluster, f"svc/{name('jaeger')}", 16686) as jaeger,
    ):
        sender = threading.Thread(target=send_spans, args=(agent_url, trace_ids, True))
        sender.start()
        time.sleep(1)  # under load when the Pod goes
        cluster.kubectl("-n", NAMESPACE, "delete", "pod", victim, "--wait=false")
        sender.join(timeout=300)
        assert not sender.is_alive()
        cluster.kubectl("-n", NAMESPACE, "rollout", "status", f"deploy/{name('gateway')}",
                        "--timeout=180s", timeout=200)  # fmt: skip
        assert victim not in gateway_pods(cluster)
        missing = wait_for_traces(jaeger, trace_ids, timeout=180)
    assert missing == [], f"{len(missing)} of {len(trace_ids)} kept traces lost"


def test_a_rollback_restores_the_first_revision(cluster: Cluster, release) -> None:
    cluster.helm("rollback", RELEASE, "1", "--namespace", NAMESPACE, "--wait", "--timeout=10m",
                 timeout=700)  # fmt: skip
    history = json.loads(
        cluster.helm("history", RELEASE, "--namespace", NAMESPACE, "-o", "json").stdout
    )
    assert [h["revision"] for h in history][-1] == 3
    assert history[-1]["status"] == "deployed"
    for pod in gateway_pods(cluster).values():
        [container] = pod["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TAIL_BASELINE_PERCENT"] == "100"


def test_uninstall_leaves_nothing_of_the_release(cluster: Cluster, release) -> None:
    cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout=5m",
                 timeout=400)  # fmt: skip
    kinds = "all,configmap,secret,pvc,networkpolicy,serviceaccount,role,rolebinding"
    deadline = time.monotonic() + 120
    while True:
        left = cluster.kubectl("-n", NAMESPACE, "get", kinds, "-o", "name").stdout.split()
        # the namespace's own: its default ServiceAccount and root CA ConfigMap
        left = [o for o in left if o not in ("serviceaccount/default",
                                             "configmap/kube-root-ca.crt")]  # fmt: skip
        if not left or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert left == []
    bound = cluster.kubectl("get", "pv", "-o", "jsonpath={.items[*].status.phase}").stdout
    assert "Bound" not in bound.split()


def test_the_host_is_as_it_was_found_after_teardown(cluster: Cluster) -> None:
    """sysctls the kubelet rewrote, the iptables chains and DROP rules, the bridge, routes,
    network namespaces, mounts and cgroups: all as before the cluster started."""
    before = HostState.load(cluster.run_dir / "host-before.json")
    after = cluster.down()
    assert after is not None
    assert before.differences(after) == {}
    assert not any(cluster.alive(p) for p in ("kubelet", "kube-apiserver", "containerd"))
