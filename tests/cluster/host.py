"""What the cluster changes on the host, recorded before it starts and put back after.

The kubelet rewrites kernel sysctls (``kernel.panic`` 1 -> 10, ``vm.overcommit_memory`` 0 ->
1, ...), it and kube-proxy and the CNI plugins add iptables chains (``KUBE-*``, ``CNI-*``,
including a DROP of 127.0.0.0/8 traffic from elsewhere), the CNI bridge plugin a bridge and
veth pairs, containerd network namespaces and mounts, the kubelet ``kubepods`` cgroups.
:class:`HostState` captures exactly the part of the host these can touch, so a comparison after
teardown shows what was left behind; other users of the machine (Docker's own chains, other
test runs) are outside what it captures.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

# Written by the kubelet (its "kernel defaults") and kube-proxy; restored after the cluster.
SYSCTLS = (
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
)
TABLES = ("filter", "nat", "mangle", "raw")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def run(*argv: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check)


def sysctl_values(names: tuple[str, ...] = SYSCTLS) -> dict[str, str]:
    """Name -> value of each sysctl this kernel has (``net.bridge.*`` needs br_netfilter)."""
    values = {}
    for name in names:
        path = Path("/proc/sys") / name.replace(".", "/")
        if path.exists():
            values[name] = " ".join(path.read_text().split())
    return values


def restore_sysctls(values: dict[str, str]) -> None:
    for name, value in values.items():
        path = Path("/proc/sys") / name.replace(".", "/")
        if " ".join(path.read_text().split()) != value:
            path.write_text(value)


@dataclass
class Marks:
    """What names the cluster's own things on this host: its bridge and address ranges."""

    bridge: str
    ranges: tuple[str, ...]  # CIDRs, e.g. ("10.244.0.0/24", "10.96.0.0/16")
    run_dir: Path

    def pattern(self) -> re.Pattern:
        prefixes = [r.split("/")[0].rsplit(".", 2)[0] + "." for r in self.ranges]
        words = ["KUBE-", "CNI-", self.bridge, *map(re.escape, prefixes)]
        return re.compile("|".join(words))


@dataclass
class HostState:
    """The part of the host the cluster can change; equal before and after when it cleaned up."""

    sysctls: dict[str, str]
    rules: dict[str, list[str]]  # "iptables filter" -> that table's rules naming the cluster
    links: list[str]
    routes: list[str]
    netns: list[str]
    mounts: list[str]
    cgroups: list[str]

    @classmethod
    def capture(cls, marks: Marks) -> HostState:
        pattern = marks.pattern()
        rules = {}
        for tool in ("iptables", "ip6tables"):
            for table in TABLES:
                out = run(f"{tool}-save", "-t", table).stdout
                lines = [
                    line
                    for line in out.splitlines()
                    if line.startswith(("-A", ":")) and pattern.search(line)
                ]
                # chain lines carry packet counters: keep the name only
                chains = sorted(line.split(" ")[0] for line in lines if line.startswith(":"))
                rules[f"{tool} {table}"] = chains + sorted(r for r in lines if r[0] == "-")
        links = [
            line.split()[0].split("@")[0]
            for line in run("ip", "-br", "link").stdout.splitlines()
            if pattern.search(line.split()[0])
        ]
        routes = [line for line in run("ip", "route").stdout.splitlines() if pattern.search(line)]
        netns_dir = Path("/run/netns")
        # containerd's CRI names the Pods' network namespaces cni-<uuid>
        netns = sorted(p.name for p in netns_dir.glob("cni-*")) if netns_dir.is_dir() else []
        run_dir = str(marks.run_dir)
        mounts = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if run_dir in line.split()[1] or "/run/netns/cni-" in line.split()[1]
        ]
        cgroups = sorted(str(p) for p in CGROUP_ROOT.glob("*/kubepods*"))
        return cls(sysctl_values(), rules, links, routes, netns, mounts, cgroups)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> HostState:
        return cls(**json.loads(path.read_text()))

    def differences(self, later: HostState) -> dict[str, tuple]:
        """Field -> (before, after) for every field that changed."""
        before, after = asdict(self), asdict(later)
        return {k: (before[k], after[k]) for k in before if before[k] != after[k]}
