"""OpenSearch for `make up STORAGE=opensearch` and the scale-out tests: one node, loopback only.

The distribution is the one ``scripts/install_backends.sh --opensearch`` unpacks (no bundled
JDK: the machine's Java runs it). Its state lives in the stack's directories, never in the
install: ``<run>/opensearch/config`` (a copy of the distribution's config, with the JVM's log
paths pointed there), ``<run>/logs/opensearch/`` and ``<data>/opensearch``.

OpenSearch refuses to run as root. As root it runs as the ``opensearch`` system user the
installer creates (``setpriv``), owning only those directories; every directory above them
must let others traverse it (not ``/root``, mode 0700), which is checked before the start.

Environment: ``OPENSEARCH_HEAP`` (JVM heap, ``512m``: about 0.7 GB resident in all).
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

USER = "opensearch"  # the installer's OPENSEARCH_USER
DEFAULT_HEAP = "512m"


def _as_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        raise RuntimeError("OpenSearch cannot run as root and `setpriv` (util-linux) is missing")
    return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups"]


def _check_reachable(path: Path) -> None:
    """The run user must traverse every directory above ``path``."""
    for parent in path.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise RuntimeError(
                f"OpenSearch runs as the user '{USER}', which cannot enter {parent} (mode "
                f"{parent.stat().st_mode & 0o777:o}): keep the clone, or DATA_DIR, where others "
                f"may traverse (or chmod o+x {parent})"
            )


def _own(*paths: Path) -> None:
    """Give the state directories to the run user (when we are root and it exists)."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        raise RuntimeError(
            f"no user '{USER}' to run OpenSearch: run scripts/install_backends.sh --opensearch"
        ) from None
    for top in paths:
        for path in [top, *top.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)


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
    if os.geteuid() == 0:
        for path in (home, config, logs, data_dir):
            _check_reachable(path)
    _own(config.parent, logs, data_dir)


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
    argv = [*_as_user(), str(home / "bin" / "opensearch")]
    return argv + [f"-E{key}={value}" for key, value in values.items()], env
