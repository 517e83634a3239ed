"""The images the cluster tier runs, as archives that ``ctr images import`` takes.

Two kinds, neither pulled from a registry (none can be reached here):

- the cluster's own: the Pod sandbox (``pause``, Kubernetes' ``pause.c``, compiled by the
  installer) and CoreDNS, each a single static binary packed by :func:`pack_oci` into a one-layer
  OCI image archive, without Docker;
- the chart's: the four services built from the repository's ``Dockerfile`` under the names the
  chart uses (``otel-order-stack/<service>:<appVersion>``) and the third-party stand-ins
  (``docker/stand-ins/build.sh --chart``: the collector, Jaeger, OpenSearch, PostgreSQL), saved
  from the Docker engine with ``docker save`` into one archive, kept in a cache named after the
  images' ids, so a warm run saves nothing.

Run alone (``python -m tests.cluster.images``) it builds and saves, and prints the archives.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from servicekit.catalog import SERVICES
from tests.compose.engine import DockerEngine, docker

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "otel-order-stack"
# Beside the installer's binaries: the saved images, containerd's store, the run directory.
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "otel-order-stack"
    / "cluster"
)
# The names the cluster's own images go by; the kubelet asks for PAUSE_IMAGE as the sandbox.
PAUSE_IMAGE = "otel-order-stack.local/pause:{version}"
COREDNS_IMAGE = "otel-order-stack.local/coredns:{version}"


def chart_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def app_version() -> str:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def service_image(name: str) -> str:
    """The chart's image of one service: ``<images.services.repository>/<name>:<appVersion>``."""
    return f"{chart_values()['images']['services']['repository']}/{name}:{app_version()}"


def chart_images() -> list[str]:
    """Every image a default install of the chart (plus its evaluation PostgreSQL) runs."""
    third_party = chart_values()["images"]
    return [service_image(s.name) for s in SERVICES] + [
        third_party[k] for k in ("collector", "jaeger", "opensearch", "postgresql")
    ]


def pack_oci(binary: Path, name: str, out: Path, entrypoint: list[str]) -> Path:
    """A one-layer OCI image archive holding ``binary`` at ``/<entrypoint[0]>``, named ``name``.

    The layer is a reproducible tar (uid 0, mtime 0); the archive is an OCI image layout
    (``oci-layout``, ``index.json``, ``blobs/sha256``) whose index names the image through the
    ``io.containerd.image.name`` annotation, which ``ctr images import`` reads.
    """
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return f"sha256:{digest}"

    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        data = binary.read_bytes()
        info = tarfile.TarInfo(entrypoint[0].lstrip("/"))
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        layer.addfile(info, io.BytesIO(data))
    layer_digest = blob(layer_buf.getvalue())
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": blob(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": len(layer_buf.getvalue()),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": blob(manifest_bytes),
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": name},
            }
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as archive:

        def add(path: str, content: bytes) -> None:
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), 0o644
            archive.addfile(info, io.BytesIO(content))

        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for digest, content in blobs.items():
            add(f"blobs/sha256/{digest}", content)
    return out


@dataclass
class ChartImages:
    """The archive of the chart's images and what making it cost (seconds per step)."""

    archive: Path
    timings: dict[str, float]


def build_chart_images(log_dir: Path) -> ChartImages:
    """Build the services' images and the stand-ins, and save them into one cached archive.

    Starts dockerd when none answers, and stops it again. Raises AssertionError (with the
    command's output) when a build fails.
    """
    timings: dict[str, float] = {}
    log_dir.mkdir(parents=True, exist_ok=True)
    engine = DockerEngine(log=log_dir / "dockerd.log")
    engine.ensure()
    try:
        started = time.monotonic()
        stand_ins = subprocess.run(
            [str(ROOT / "docker" / "stand-ins" / "build.sh"), "--chart"],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        assert stand_ins.returncode == 0, stand_ins.stderr[-3000:]
        timings["stand-ins"] = time.monotonic() - started
        started = time.monotonic()
        for spec in SERVICES:
            docker(
                "build",
                "-q",
                f"--build-arg=SERVICE={spec.name}",
                f"--build-arg=SERVICE_MODULE={spec.package}",
                f"--build-arg=SERVICE_PORT={spec.default_port}",
                "-t",
                service_image(spec.name),
                str(ROOT),
                timeout=1800,
            )
        timings["service images"] = time.monotonic() - started
        images = chart_images()
        ids = docker("image", "inspect", "--format", "{{.Id}}", *images).stdout.split()
        key = hashlib.sha256(" ".join(images + ids).encode()).hexdigest()[:16]
        archive = CACHE / "images" / f"chart-{key}.tar"
        if not archive.exists():
            started = time.monotonic()
            for old in archive.parent.glob("chart-*.tar"):
                old.unlink()
            archive.parent.mkdir(parents=True, exist_ok=True)
            partial = archive.with_suffix(f".{os.getpid()}.part")
            docker("save", "-o", str(partial), *images, timeout=1800)
            partial.rename(archive)
            timings["docker save"] = time.monotonic() - started
        return ChartImages(archive=archive, timings=timings)
    finally:
        engine.stop()


if __name__ == "__main__":
    result = build_chart_images(CACHE / "logs")
    print(result.archive, json.dumps({k: round(v, 1) for k, v in result.timings.items()}))
