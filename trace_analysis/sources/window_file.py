"""``--save FILE``: the traces of a live window written as Jaeger sent them, for a baseline.

One line per page of the window's search (JSON Lines: a v3 ``{"result": {"resourceSpans":
...}}`` or a v1 ``{"data": [...]}`` answer, made compact), which ``--input`` and ``--baseline``
read back as the same traces (a trace on two pages is merged by span id). The file is written
beside its name (``FILE.part``) and takes the name only once the window is read whole, so a
failed run leaves no half baseline, and an empty window none at all (no file is a clearer
answer than an empty one); a name ending in ``.gz`` is gzip-compressed.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO

import msgspec

from trace_analysis.errors import AnalyzerError


class WindowFile:
    """A context manager; :meth:`write` takes each page's body (JSON bytes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pages = 0
        self._part = path.with_name(path.name + ".part")
        self._file: IO[bytes] | None = None

    def __enter__(self) -> WindowFile:
        try:
            if self.path.name.endswith(".gz"):
                self._file = gzip.open(self._part, "wb")
            else:
                self._file = self._part.open("wb")
        except OSError as exc:
            raise AnalyzerError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        return self

    def write(self, body: bytes) -> None:
        assert self._file is not None
        self._file.write(msgspec.json.format(body, indent=0))
        self._file.write(b"\n")
        self.pages += 1

    def __exit__(self, exc_type: object, *rest: object) -> None:
        assert self._file is not None
        self._file.close()
        if exc_type is not None or not self.pages:  # failed, or an empty window: no file
            self._part.unlink(missing_ok=True)
            return
        try:
            self._part.replace(self.path)
        except OSError as exc:
            self._part.unlink(missing_ok=True)
            raise AnalyzerError(f"cannot write {self.path}: {exc.strerror or exc}") from None
