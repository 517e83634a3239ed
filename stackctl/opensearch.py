"""OpenSearch for `make up STORAGE=opensearch` and the scale-out tests: one node, loopback only.

The distribution is the one ``scripts/install_backends.sh --opensearch`` unpacks (no bundled
JDK: the machine's Java runs it). Its state lives in the stack's directories, never in the
install: ``<run>/opensearch/config`` (a copy of the distribution's config, with the JVM's log
paths pointed there), ``<run>/logs/opensearch/`` and ``<data>/opensearch``.

OpenSearch refuses to run as root. As root it runs as the ``opensearch`` system user the
installer creates (:mod:`stackctl.run_as`), owning only those directories.

Environment: ``OPENSEARCH_HEAP`` (JVM heap, ``512m``: about 0.7 GB resident in all).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from stackctl.run_as import as_user, check_reachable, own

USER = "opensearch"  # the installer's OPENSEARCH_USER
DEFAULT_HEAP = "512m"


def _dirs(run_dir: Path) -> tuple[Path, Path, Path]:
    """(config, logs, tmp) of the node."""
    home = run_dir / "opensearch"
    return home / "config", run_dir / "logs" / "opensearch", home / "tmp"


def lay_out(home: Path, run_dir: Path, data_dir: Path) -> None:
    """Create the node's config, logs, tmp and data directories (before each start)."""
    if not (home / "bin" / "opensearch").exists():
        raise RuntimeError(f"{home} is missing: run scripts/install_backends.sh --opensearch")
    config, logs, tmp = _dirs(run_dir)
    if not config.exists():
        shutil.copytree(home / "config", config)
        # The JVM resolves these relative to the install, which is read-only to the run user.
        jvm = config / "jvm.options"
        jvm.write_text(
            jvm.read_text()
            .replace("file=logs/", f"file={logs}/")
            .replace("ErrorFile=logs/", f"ErrorFile={logs}/")
            .replace("HeapDumpPath=data", f"HeapDumpPath={data_dir}")
        )
    for path in (logs, tmp, data_dir):
        path.mkdir(parents=True, exist_ok=True)
    for path in (home, config, logs, data_dir):
        check_reachable(path, USER, "OpenSearch")
    own(USER, "run scripts/install_backends.sh --opensearch", config.parent, logs, data_dir)


def command(
    home: Path, run_dir: Path, data_dir: Path, http_port: int, transport_port: int
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start the node laid out by :func:`lay_out`.

    A single node on loopback (bootstrap checks do not apply there), no security plugin (the
    integ-test distribution has none): plain HTTP on ``http_port``.
    """
    config, logs, tmp = _dirs(run_dir)
    heap = os.environ.get("OPENSEARCH_HEAP", DEFAULT_HEAP)
    env = {
        "OPENSEARCH_PATH_CONF": str(config),
        "OPENSEARCH_TMPDIR": str(tmp),
        "OPENSEARCH_JAVA_OPTS": f"-Xms{heap} -Xmx{heap}",
    }
    if "OPENSEARCH_JAVA_HOME" not in os.environ and (java := shutil.which("java")):
        env["OPENSEARCH_JAVA_HOME"] = str(Path(java).resolve().parent.parent)
    values = {
        "discovery.type": "single-node",
        "network.host": "127.0.0.1",
        "http.port": http_port,
        "transport.port": transport_port,
        "path.data": data_dir,
        "path.logs": logs,
        # A laptop's disk is often more than 90 % full; do not turn the indices read-only.
        "cluster.routing.allocation.disk.threshold_enabled": "false",
    }
    argv = [*as_user(USER, "OpenSearch"), str(home / "bin" / "opensearch")]
    return argv + [f"-E{key}={value}" for key, value in values.items()], env
