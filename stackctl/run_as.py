"""Running a backend as its own system user when stackctl runs as root.

OpenSearch refuses to run as root and so does PostgreSQL. As root, each runs as the system user
its Debian package or the installer creates (``setpriv``), owning only its state directories;
every directory above them must let others traverse it (not ``/root``, mode 0700), which is
checked before the start. As another user, a backend runs as that user and nothing changes hands.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path


def as_user(user: str, what: str) -> list[str]:
    """The argv prefix that runs a command as ``user`` when we are root (else none). Raises
    RuntimeError naming ``what`` when ``setpriv`` (util-linux) is missing."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        raise RuntimeError(f"{what} cannot run as root and `setpriv` (util-linux) is missing")
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]


def check_reachable(path: Path, user: str, what: str) -> None:
    """Raise RuntimeError unless ``user`` may traverse every directory above ``path``."""
    if os.geteuid() != 0:
        return
    for parent in path.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise RuntimeError(
                f"{what} runs as the user '{user}', which cannot enter {parent} (mode "
                f"{parent.stat().st_mode & 0o777:o}): keep the clone, or DATA_DIR and RUN_DIR, "
                f"where others may traverse (or chmod o+x {parent})"
            )


def own(user: str, hint: str, *paths: Path) -> None:
    """Give ``paths`` and everything under them to ``user`` (when we are root). Raises
    RuntimeError with ``hint`` (how to create the user) when it does not exist."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise RuntimeError(f"no user '{user}': {hint}") from None
    for top in paths:
        for path in [top, *top.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
