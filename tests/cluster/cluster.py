"""A single-node Kubernetes cluster on this machine, for installing the chart for real.

Built from packages only (``scripts/install_backends.sh --cluster``): Kubernetes v1.34 (API
server, controller manager, scheduler, kubelet, kube-proxy, kubectl), etcd and CoreDNS built
with Go from the module proxy; Debian's containerd 1.6, runc and CNI plugins. Everything runs
as root from a run directory of its own; the images are imported with ``ctr``, never pulled.

The network: a bridge (:data:`BRIDGE`) with the Pod range behind it; the API server and the
kubelet listen on the bridge's address, which the Pods reach; the Service range is routed onto
the bridge; a mangle rule drops whatever a Pod sends towards another interface, so nothing from
the cluster leaves the machine. Load reaches it only through ``kubectl port-forward`` on
127.0.0.1. :mod:`tests.cluster.host` records what the cluster changes on the host; ``down``
puts it back, also after a failed or interrupted run (the next ``up`` cleans a crashed one).

Facts this depends on, learned on these machines: the version ``-ldflags`` (else the node
reports v0.0.0, refused by the chart's ``kubeVersion``); containerd's
``restrict_oom_score_adj`` (root here lacks CAP_SYS_RESOURCE: without it every sandbox fails
with "can't get final child's PID from pipe"); kubelet's ``cgroupDriver: cgroupfs`` and
``failCgroupV1: false`` (cgroup v1); the API server on the bridge address with
``--kubelet-preferred-address-types=InternalIP``.

``python -m tests.cluster.cluster up|down|status`` drives it by hand (``KUBECONFIG`` printed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from stackctl.stack import binary_paths
from tests.cluster.host import HostState, Marks, restore_sysctls, run
from tests.cluster.images import CACHE, COREDNS_IMAGE, PAUSE_IMAGE, ROOT, pack_oci
from tests.cluster.manifests import coredns, local_volumes
from tests.cluster.pki import make_pki

BRIDGE = "oos-k8s0"
GATEWAY_IP = "10.244.0.1"  # the bridge's address: the API server and the kubelet listen here
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
DNS_IP = "10.96.0.10"
NODE = "oos-node"
API_PORT = 6443
# The names the API server's certificate holds: as Pods, the host and the Service reach it.
API_NAMES = (
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    "IP:127.0.0.1",
    f"IP:{GATEWAY_IP}",
    f"IP:{API_SERVICE_IP}",
)
# containerd's socket and state: a short path (a Unix socket path is limited to 108 bytes).
STATE = Path("/run/otel-order-stack-cluster")
# Stopped in this order (the reverse of the start); the kubelet first stops the Pods.
PROCESSES = (
    "kube-proxy",
    "kubelet",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "containerd",
    "etcd",
)


def binaries() -> dict[str, Path]:
    """The installer's paths (``scripts/install_backends.sh --paths``) of the cluster's programs."""
    paths = binary_paths()
    k8s = paths["KUBERNETES_DIR"]
    found = {name: k8s / name for name in (*PROCESSES[:5], "kubectl", "pause")}
    found |= {"etcd": paths["ETCD"], "coredns": paths["COREDNS"], "helm": paths["HELM"]}
    missing = [str(p) for p in found.values() if not p.exists()]
    assert not missing, f"{missing} missing: run scripts/install_backends.sh --cluster"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kubernetes_version() -> str:
    text = (ROOT / "scripts" / "install_backends.sh").read_text()
    return text.split("KUBERNETES_VERSION=", 1)[1].split()[0]


@dataclass
class Cluster:
    """One single-node cluster, its processes and files under ``run_dir``."""

    run_dir: Path
    bins: dict[str, Path] = field(default_factory=binaries)
    timings: dict[str, float] = field(default_factory=dict)

    # --- paths ---------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / "admin.kubeconfig"

    @property
    def socket(self) -> Path:
        return STATE / "containerd.sock"

    @property
    def marks(self) -> Marks:
        return Marks(BRIDGE, (POD_CIDR, SERVICE_CIDR), self.run_dir)

    def pid_file(self, name: str) -> Path:
        return self.run_dir / "pids" / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    # --- commands ------------------------------------------------------------------------
    def kubectl(self, *args: str, timeout: float = 120, check: bool = True, input: str = ""):
        """``kubectl <args>`` as the cluster's admin; a failure raises with its output."""
        result = subprocess.run(
            [str(self.bins["kubectl"]), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input or None,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    def helm(self, *args: str, timeout: float = 600, check: bool = True):
        result = subprocess.run(
            [str(self.bins["helm"]), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    def ctr(self, *args: str, timeout: float = 600, check: bool = True):
        result = subprocess.run(
            ["ctr", f"--address={self.socket}", "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    def import_images(self, archive: Path) -> None:
        self.ctr("images", "import", str(archive), timeout=1800)

    # --- processes -----------------------------------------------------------------------
    def start(self, name: str, *argv: str | Path) -> None:
        with self.log(name).open("ab") as out:
            process = subprocess.Popen(
                [str(a) for a in argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file(name).write_text(str(process.pid))

    def alive(self, name: str) -> int | None:
        """The pid of that process when it runs (not a zombie), else None."""
        path = self.pid_file(name)
        if not path.exists():
            return None
        pid = int(path.read_text())
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return None
        return None if state == "Z" else pid

    def stop(self, name: str, grace: float = 20) -> None:
        pid = self.alive(name)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.alive(name) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.alive(name):
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
        self.pid_file(name).unlink(missing_ok=True)

    def wait(self, what: str, check, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        logs = {p.name: p.read_text(errors="replace")[-1500:] for p in self.run_dir.glob("logs/*")}
        raise AssertionError(f"timed out waiting for {what}; logs: {json.dumps(logs, indent=1)}")

    # --- up ------------------------------------------------------------------------------
    def up(self, images: list[Path] = ()) -> None:
        """Start the cluster and wait for a Ready node and CoreDNS; import ``images``.

        The host's state is recorded first (``host-before.json``); a cluster left by a crashed
        run is torn down before.
        """
        if (self.run_dir / "pids").exists():
            self.down()  # a crashed run's cluster
        # a fresh cluster each time: no etcd data, Pods or certificates of an earlier run
        shutil.rmtree(self.run_dir, ignore_errors=True)
        started = time.monotonic()
        for sub in ("pids", "logs", "pki", "kubelet", "cni", "volumes"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        HostState.capture(self.marks).save(self.run_dir / "host-before.json")
        self.ports = {k: free_port() for k in ("etcd", "etcd-peer", "cm", "sched", "kubelet")}
        self.ports |= {"proxy-health": free_port(), "proxy-metrics": free_port()}
        (self.run_dir / "ports.json").write_text(json.dumps(self.ports))
        make_pki(self.run_dir, NODE, f"https://{GATEWAY_IP}:{API_PORT}", API_NAMES)
        self._configs()
        self._network_up()
        self._start_control_plane()
        self.timings["control plane"] = time.monotonic() - started
        version = kubernetes_version()
        for binary, image, path in (
            ("pause", PAUSE_IMAGE.format(version=version), "/pause"),
            ("coredns", COREDNS_IMAGE.format(version=version), "/coredns"),
        ):
            archive = self.run_dir / "images" / f"{binary}.tar"
            self.import_images(pack_oci(self.bins[binary], image, archive, [path]))
        imported = time.monotonic()
        # containerd's store is kept across runs: an archive already imported is not read again
        marker = CACHE / "containerd" / "imported"
        done = set(marker.read_text().split()) if marker.exists() else set()
        for archive in images:
            if archive.name not in done:
                self.import_images(archive)
                done.add(archive.name)
        marker.write_text("\n".join(sorted(done)))
        self.timings["image import"] = time.monotonic() - imported
        self._start_node()
        self.wait(
            "the node to register",
            lambda: self.kubectl("get", "node", NODE, check=False).returncode == 0,
        )
        self.kubectl("wait", "--for=condition=Ready", f"node/{NODE}", "--timeout=120s", timeout=150)
        image = COREDNS_IMAGE.format(version=kubernetes_version())
        self.kubectl("apply", "-f", "-", input=coredns(image, DNS_IP))
        self.kubectl(
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deploy/coredns",
            "--timeout=120s",
            timeout=150,
        )
        self.timings["up"] = time.monotonic() - started

    def _configs(self) -> None:
        run_dir, ports = self.run_dir, self.ports
        # The Pods' network: the bridge plugin (gateway on the bridge), host-local addresses,
        # portmap and the firewall plugin's iptables rules.
        cni = {
            "cniVersion": "1.0.0",
            "name": "oos-net",
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(run_dir / "cni" / "ipam"),
                          "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY_IP}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "firewall", "backend": "iptables"},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }  # fmt: skip
        (run_dir / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        (run_dir / "cni" / "net.d" / "10-oos.conflist").write_text(json.dumps(cni))
        root = CACHE / "containerd"  # kept across runs: the imported images stay
        pause = PAUSE_IMAGE.format(version=kubernetes_version())
        (run_dir / "containerd.toml").write_text(f"""version = 2
root = "{root}"
state = "{STATE}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{run_dir}/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj as the kubelet asks
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{run_dir}/cni/net.d"
""")
        kubelet = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": GATEWAY_IP,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": ports["kubelet"],
            "readOnlyPort": 0,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(run_dir / "pki" / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "clusterDNS": [DNS_IP],
            "clusterDomain": "cluster.local",
            "resolvConf": "",
            "failSwapOn": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "serializeImagePulls": False,
        }  # fmt: skip
        (run_dir / "kubelet.yaml").write_text(json.dumps(kubelet))
        proxy = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(run_dir / "kube-proxy.kubeconfig")},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE,
            "healthzBindAddress": f"127.0.0.1:{ports['proxy-health']}",
            "metricsBindAddress": f"127.0.0.1:{ports['proxy-metrics']}",
            "nodePortAddresses": [f"{GATEWAY_IP}/32"],
            "iptables": {"localhostNodePorts": False},
            "conntrack": {"maxPerCore": 0, "min": 0},
        }  # fmt: skip
        (run_dir / "kube-proxy.yaml").write_text(json.dumps(proxy))

    def _network_up(self) -> None:
        """The bridge before the API server (which listens on its address); the Service range
        routed onto it; anything a Pod sends to another interface dropped."""
        if run("ip", "link", "show", BRIDGE).returncode != 0:
            run("ip", "link", "add", BRIDGE, "type", "bridge", check=True)
        run("ip", "addr", "replace", f"{GATEWAY_IP}/24", "dev", BRIDGE, check=True)
        run("ip", "link", "set", BRIDGE, "up", check=True)
        run("ip", "route", "replace", SERVICE_CIDR, "dev", BRIDGE, check=True)
        drop = ("FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP")
        if run("iptables", "-t", "mangle", "-C", *drop).returncode != 0:
            run("iptables", "-t", "mangle", "-I", *drop, check=True)

    def _start_control_plane(self) -> None:
        b, p, pki = self.bins, self.ports, self.run_dir / "pki"
        etcd_url = f"http://127.0.0.1:{p['etcd']}"
        peer = f"http://127.0.0.1:{p['etcd-peer']}"
        self.start("etcd", b["etcd"], "--name=oos", f"--data-dir={self.run_dir}/etcd",
                   "--unsafe-no-fsync", f"--listen-client-urls={etcd_url}",
                   f"--advertise-client-urls={etcd_url}", f"--listen-peer-urls={peer}",
                   f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=oos={peer}",
                   "--listen-metrics-urls=")  # fmt: skip
        STATE.mkdir(parents=True, exist_ok=True)
        self.start("containerd", "containerd", f"--config={self.run_dir}/containerd.toml")
        self.wait("etcd", lambda: run("curl", "-sf", f"{etcd_url}/health").returncode == 0)
        self.start("kube-apiserver", b["kube-apiserver"], f"--etcd-servers={etcd_url}",
                   f"--bind-address={GATEWAY_IP}", f"--advertise-address={GATEWAY_IP}",
                   f"--secure-port={API_PORT}", f"--service-cluster-ip-range={SERVICE_CIDR}",
                   f"--tls-cert-file={pki}/apiserver.crt",
                   f"--tls-private-key-file={pki}/apiserver.key", f"--client-ca-file={pki}/ca.crt",
                   f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
                   f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
                   "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                   f"--service-account-key-file={pki}/sa.pub",
                   f"--service-account-signing-key-file={pki}/sa.key",
                   "--kubelet-preferred-address-types=InternalIP",
                   "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
                   "--profiling=false")  # fmt: skip
        self.wait("containerd", self.socket.exists, timeout=30)
        self.wait(
            "the API server",
            lambda: self.kubectl("get", "--raw=/readyz", check=False).returncode == 0,
            timeout=180,
        )

    def _start_node(self) -> None:
        b, p, pki, r = self.bins, self.ports, self.run_dir / "pki", self.run_dir
        cm = f"{r}/controller-manager.kubeconfig"
        self.start("kube-controller-manager", b["kube-controller-manager"], f"--kubeconfig={cm}",
                   f"--authentication-kubeconfig={cm}", f"--authorization-kubeconfig={cm}",
                   f"--service-account-private-key-file={pki}/sa.key",
                   f"--root-ca-file={pki}/ca.crt", "--use-service-account-credentials=true",
                   f"--cluster-signing-cert-file={pki}/ca.crt",
                   f"--cluster-signing-key-file={pki}/ca.key", "--leader-elect=false",
                   "--bind-address=127.0.0.1", f"--secure-port={p['cm']}",
                   "--profiling=false")  # fmt: skip
        sched = f"{r}/scheduler.kubeconfig"
        self.start("kube-scheduler", b["kube-scheduler"], f"--kubeconfig={sched}",
                   f"--authentication-kubeconfig={sched}", f"--authorization-kubeconfig={sched}",
                   "--leader-elect=false", "--bind-address=127.0.0.1",
                   f"--secure-port={p['sched']}",
                   "--profiling=false")  # fmt: skip
        self.start("kubelet", b["kubelet"], f"--config={r}/kubelet.yaml",
                   f"--kubeconfig={r}/kubelet.kubeconfig", f"--hostname-override={NODE}",
                   f"--node-ip={GATEWAY_IP}", f"--root-dir={r}/kubelet",
                   f"--cert-dir={r}/kubelet/pki")  # fmt: skip
        self.start("kube-proxy", b["kube-proxy"], f"--config={r}/kube-proxy.yaml")

    def local_volumes(self, count: int, size: str = "20Gi") -> None:
        """``count`` PersistentVolumes of the ``local`` kind on the node, for the chart's
        StatefulSets' claims: directories in the run directory, root-owned 0755 like a fresh
        disk, so only an ``fsGroup`` lets a non-root Pod write them."""
        paths = []
        for i in range(count):
            path = self.run_dir / "volumes" / f"pv{i}"
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)
            paths.append(path)
        self.kubectl("apply", "-f", "-", input=local_volumes(paths, size, NODE))

    # --- down ----------------------------------------------------------------------------
    def down(self) -> HostState | None:
        """Stop everything this cluster started and put the host back as ``up`` found it.

        Idempotent, and safe after a partial ``up``. Returns the host's state afterwards
        (None when nothing was recorded).
        """
        started = time.monotonic()
        if self.alive("kubelet") and self.alive("kube-apiserver"):
            # Controllers first without cascading (else their Pods get their whole grace
            # period), then the Pods with 1 s: the kubelet stops them and CNI releases them.
            self.kubectl("delete", "deploy,rs,ds,sts,job", "--all", "-A", "--cascade=orphan",
                         "--wait=false", check=False)  # fmt: skip
            self.kubectl("delete", "pods", "--all", "-A", "--grace-period=1", "--wait=false",
                         check=False)  # fmt: skip
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self._tasks():
                time.sleep(0.5)
        self.stop("kube-proxy")
        self.stop("kubelet")
        if self.bins["kube-proxy"].exists():
            run(str(self.bins["kube-proxy"]), "--cleanup")
        if self.alive("containerd"):
            for task in self._tasks():
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            time.sleep(1)
            for task in self._tasks():
                self.ctr("tasks", "delete", "-f", task, check=False)
            for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
                self.ctr("containers", "delete", container, check=False)
        for name in PROCESSES[2:]:
            self.stop(name)
        self._host_cleanup()
        self.timings["down"] = time.monotonic() - started
        before = self.run_dir / "host-before.json"
        if not before.exists():
            return None
        restore_sysctls(HostState.load(before).sysctls)
        after = HostState.capture(self.marks)
        after.save(self.run_dir / "host-after.json")
        shutil.rmtree(self.run_dir / "pids", ignore_errors=True)
        return after

    def _tasks(self) -> list[str]:
        if not self.socket.exists():
            return []
        return self.ctr("tasks", "ls", "-q", check=False, timeout=30).stdout.split()

    def _host_cleanup(self) -> None:
        before = self.run_dir / "host-before.json"
        netns_before = set(HostState.load(before).netns) if before.exists() else set()
        netns = Path("/run/netns")
        for ns in netns.glob("cni-*") if netns.is_dir() else []:
            if ns.name not in netns_before:
                run("umount", str(ns))
                ns.unlink(missing_ok=True)
        mounts = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if str(self.run_dir) in line.split()[1]
            or str(STATE) in line.split()[1]
            or str(CACHE / "containerd") in line.split()[1]
        ]
        for mount in sorted(mounts, reverse=True):
            run("umount", "-l", mount)
        run("ip", "link", "del", BRIDGE)
        run("ip", "route", "del", SERVICE_CIDR)
        run("iptables", "-t", "mangle", "-D", "FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE,
            "-j", "DROP")  # fmt: skip
        # CNI's (firewall, portmap) and the kubelet's chains (kube-proxy --cleanup removes
        # only its own): the jumps into them from other chains, then the chains.
        for tool in ("iptables", "ip6tables"):
            for table in ("filter", "nat", "mangle"):
                rules = run(tool, "-t", table, "-S").stdout.splitlines()
                for rule in rules:
                    parts = shlex.split(rule)  # comments are quoted
                    if (
                        parts[0] == "-A"
                        and not parts[1].startswith(("KUBE-", "CNI-"))
                        and any(p.startswith(("KUBE-", "CNI-")) for p in parts[2:])
                    ):
                        run(tool, "-t", table, "-D", *parts[1:])
                chains = [r.split()[1] for r in rules if r.startswith("-N ")]
                ours = [c for c in chains if c.startswith(("KUBE-", "CNI-"))]
                for chain in ours:
                    run(tool, "-t", table, "-F", chain)
                for chain in ours:
                    run(tool, "-t", table, "-X", chain)
        # the kubelet's cgroups, deepest first (a cgroup with no process can be removed)
        for cgroup in Path("/sys/fs/cgroup").glob("*/kubepods*"):
            tree = [p for p in cgroup.rglob("*") if p.is_dir()]
            for directory in [*sorted(tree, key=lambda p: len(p.parts), reverse=True), cgroup]:
                with contextlib.suppress(OSError):
                    directory.rmdir()
        run("rm", "-rf", str(STATE))


def main(argv: list[str]) -> int:
    cluster = Cluster(CACHE / "run")
    if argv[:1] == ["up"]:
        cluster.up()
        print(f"KUBECONFIG={cluster.kubeconfig}", json.dumps(cluster.timings))
    elif argv[:1] == ["down"]:
        after = cluster.down()
        before = cluster.run_dir / "host-before.json"
        if after is not None:
            print(json.dumps(HostState.load(before).differences(after), indent=1) or "clean")
    elif argv[:1] == ["status"]:
        for name in PROCESSES:
            print(name, cluster.alive(name) or "-")
    else:
        print("usage: python -m tests.cluster.cluster up|down|status")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
