"""The cluster's certificates and kubeconfigs, made with ``openssl`` (P-256 keys, 30 days).

One CA signs the API server's serving certificate (``names``: its DNS names and addresses)
and a client certificate per component: the admin (``system:masters``), the API server's
client to the kubelets, the controller manager, the scheduler, kube-proxy and the node's
kubelet (``system:node:<node>`` in ``system:nodes``, as the Node authorizer wants). The
service account signing key pair is ``sa.key``/``sa.pub``. Each client gets a kubeconfig
``<run_dir>/<user>.kubeconfig`` pointing at ``server``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.cluster.host import run

KUBECONFIG_USERS = ("admin", "controller-manager", "scheduler", "kube-proxy", "kubelet")


def openssl(*args: str) -> None:
    run("openssl", *args, check=True)


def key(path: Path) -> None:
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))


def make_pki(run_dir: Path, node: str, server: str, names: tuple[str, ...]) -> None:
    pki = run_dir / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    ca_key, ca = pki / "ca.key", pki / "ca.crt"
    key(ca_key)
    openssl("req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=oos-ca", "-days", "30",
            "-out", str(ca))  # fmt: skip
    client = "clientAuth"
    certs = {
        "apiserver": ("/CN=kube-apiserver", "serverAuth", names),
        "admin": ("/O=system:masters/CN=kubernetes-admin", client, ()),
        "apiserver-kubelet-client": (
            "/O=system:masters/CN=kube-apiserver-kubelet-client", client, ()),
        "controller-manager": ("/CN=system:kube-controller-manager", client, ()),
        "scheduler": ("/CN=system:kube-scheduler", client, ()),
        "kube-proxy": ("/CN=system:kube-proxy", client, ()),
        "kubelet": (f"/O=system:nodes/CN=system:node:{node}", client, ()),
    }  # fmt: skip
    for name, (subject, usage, alt) in certs.items():
        crt_key, csr, crt, ext = (pki / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
        key(crt_key)
        openssl("req", "-new", "-key", str(crt_key), "-subj", subject, "-out", str(csr))
        lines = [f"extendedKeyUsage={usage}"] + ([f"subjectAltName={','.join(alt)}"] if alt else [])
        ext.write_text("\n".join(lines) + "\n")
        signing = ("-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "30")
        openssl("x509", "-req", "-in", str(csr), *signing, "-extfile", str(ext), "-out", str(crt))
    key(pki / "sa.key")
    openssl("ec", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    ca_data = base64.b64encode(ca.read_bytes()).decode()
    for user in KUBECONFIG_USERS:
        cert = base64.b64encode((pki / f"{user}.crt").read_bytes()).decode()
        user_key = base64.b64encode((pki / f"{user}.key").read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "oos", "cluster": {
                "server": server, "certificate-authority-data": ca_data}}],
            "users": [{"name": user, "user": {
                "client-certificate-data": cert, "client-key-data": user_key}}],
            "contexts": [{"name": "oos", "context": {"cluster": "oos", "user": user}}],
            "current-context": "oos",
        }  # fmt: skip
        (run_dir / f"{user}.kubeconfig").write_text(json.dumps(config))
