"""The cluster tier's pieces that need no cluster: the OCI archives it packs for the cluster's
own images, and which host changes it counts as its own (tests/cluster/)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from tests.cluster.host import HostState, Marks
from tests.cluster.images import pack_oci

MARKS = Marks("oos-k8s0", ("10.244.0.0/24", "10.96.0.0/16"), Path("/tmp/run"))


def test_a_packed_image_is_an_oci_layout_whose_digests_hold(tmp_path: Path) -> None:
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF not really")
    archive = pack_oci(binary, "otel-order-stack.local/pause:v1", tmp_path / "p.tar", ["/pause"])
    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    [entry] = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "otel-order-stack.local/pause:v1"
    for name, content in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(content).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(files[f"blobs/sha256/{entry['digest'].split(':')[1]}"])
    config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
    assert config["config"]["Entrypoint"] == ["/pause"]
    layer = files[f"blobs/sha256/{manifest['layers'][0]['digest'].split(':')[1]}"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        [member] = tar.getmembers()
        assert (member.name, member.mode, member.uid) == ("pause", 0o755, 0)
        assert tar.extractfile(member).read() == binary.read_bytes()
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]


def test_the_host_state_counts_the_clusters_rules_and_not_others() -> None:
    pattern = MARKS.pattern()
    ours = [
        "-A INPUT -j KUBE-FIREWALL",
        '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming'
        ' localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
        "-A FORWARD -i oos-k8s0 ! -o oos-k8s0 -j DROP",
        "-A POSTROUTING -s 10.244.0.0/24 -j CNI-abc",
        "10.96.0.0/16 dev oos-k8s0 scope link",
    ]
    others = [
        "-A FORWARD -o docker0 -j DOCKER",
        "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
        "default via 192.0.2.1 dev eth0",
    ]
    assert all(pattern.search(line) for line in ours)
    assert not any(pattern.search(line) for line in others)


def test_differences_name_what_changed() -> None:
    state = HostState({"kernel.panic": "1"}, {"iptables filter": []}, [], [], [], [], [])
    later = HostState({"kernel.panic": "10"}, {"iptables filter": ["-A X"]}, [], [], [], [], [])
    assert state.differences(state) == {}
    assert set(state.differences(later)) == {"sysctls", "rules"}
    assert state.differences(later)["sysctls"] == ({"kernel.panic": "1"}, {"kernel.panic": "10"})
