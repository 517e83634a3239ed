"""The local stack's admin token: what lets ``make demo-faults`` and ``make demo-regression``
inject faults into a stack that a plain ``make up`` started.

``ADMIN_TOKEN`` from the environment wins. Otherwise ``up`` makes a random token and keeps it
in ``run/admin-token`` (mode 0600; never printed, never logged), the services get it in their
environment, and the demos read it back from the file. The local stack's services listen on
127.0.0.1 only (:mod:`stackctl.stack`), so the admin routes this turns on answer on this machine
only, and only to a caller that can read the file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path


def token_file(run_dir: Path) -> Path:
    return run_dir / "admin-token"


def admin_token(run_dir: Path, env: Mapping[str, str], create: bool) -> str | None:
    """``ADMIN_TOKEN`` from ``env``, else the saved one, else (when ``create``: nothing runs yet)
    a new random token, saved. None when there is none and ``create`` is false."""
    if env.get("ADMIN_TOKEN"):
        return env["ADMIN_TOKEN"]
    path = token_file(run_dir)
    try:
        saved = path.read_text().strip()
    except OSError:
        saved = ""
    if saved or not create:
        return saved or None
    token = secrets.token_urlsafe(24)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # an older, wider file keeps its mode through O_CREAT
        out.write(token + "\n")
    return token
