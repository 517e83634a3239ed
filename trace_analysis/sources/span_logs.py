"""The log lines of one trace, by span: what a trace's page shows under each span.

The services write one JSON object a line, stamped with the ``trace_id`` and ``span_id`` of
the span current when it was logged (``servicekit/logs.py``). In local mode (``make up``)
every process's output is a file ``<process>.log`` in one directory (``run/logs``), and
this reads those files: the last ``max_bytes`` of each (so a page never reads a log without
bound), the lines holding the trace id first found by a byte search, then only those decoded.
Lines of other processes (Jaeger's, the collector's) do not carry the id and are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from stackctl.logview import readable_parts

MAX_LINES = 2000  # per trace: a trace that logs more shows the first ones, and says so
MAX_TEXT = 8192  # characters of one line shown; a longer one is cut, and says so


@dataclass(slots=True)
class LogLine:
    """One line: the file it is in, its ``HH:MM:SS.mmm`` time, level and readable text."""

    file: str
    time: str
    level: str
    text: str  # the message, then the line's other fields as key=value


@dataclass(slots=True)
class TraceLogs:
    """A trace's lines by span id (``""``: logged in the trace but outside any span)."""

    by_span: dict[str, list[LogLine]] = field(default_factory=dict)
    files: int = 0  # log files read
    truncated: bool = False  # more than MAX_LINES lines held the id
    partial: list[str] = field(default_factory=list)  # files read only in part (too large)

    @property
    def count(self) -> int:
        return sum(len(lines) for lines in self.by_span.values())


def trace_logs(log_dir: Path, trace_id: str, max_bytes: int) -> TraceLogs:
    """The lines of ``trace_id`` (hex, any case, zero-padded to 32 digits as the services
    write it) in the ``*.log`` files of ``log_dir``, oldest first within each file. A
    directory that does not exist gives none."""
    found = TraceLogs()
    wanted = trace_id.strip().lower().zfill(32)
    needle = wanted.encode()
    try:
        files = sorted(path for path in log_dir.glob("*.log") if path.is_file())
    except OSError:
        return found
    for path in files:
        try:
            chunk, whole = _tail(path, max_bytes)
        except OSError:
            continue
        found.files += 1
        if not whole:
            found.partial.append(path.name)
        start = chunk.find(needle)
        while start != -1:
            line_start = chunk.rfind(b"\n", 0, start) + 1
            line_end = chunk.find(b"\n", start)
            line_end = len(chunk) if line_end == -1 else line_end
            _add(found, path.stem, chunk[line_start:line_end], wanted)
            start = chunk.find(needle, line_end)
    return found


def _tail(path: Path, max_bytes: int) -> tuple[bytes, bool]:
    """The last ``max_bytes`` of the file, from its first whole line; whether that is all."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        offset = max(0, size - max_bytes)
        handle.seek(offset)
        chunk = handle.read(max_bytes)
    if offset:
        chunk = chunk[chunk.find(b"\n") + 1 :]
    return chunk, offset == 0


def _add(found: TraceLogs, file: str, raw: bytes, trace_id: str) -> None:
    try:
        record = json.loads(raw)
    except ValueError:
        return
    if not isinstance(record, dict) or str(record.get("trace_id", "")).lower() != trace_id:
        return
    if found.count >= MAX_LINES:
        found.truncated = True
        return
    span_id = str(record.pop("span_id", "") or "").lower()
    del record["trace_id"]
    time, level, text = readable_parts(record)
    text = text.strip()
    if len(text) > MAX_TEXT:
        text = f"{text[:MAX_TEXT]}... ({len(text) - MAX_TEXT:,} more characters)"
    found.by_span.setdefault(span_id, []).append(LogLine(file, time, level, text))
