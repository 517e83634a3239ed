"""Reading a saved Jaeger JSON export, one trace at a time.

The file is memory-mapped rather than read: the operating system pages it in as the decoder
walks it and may drop those pages again, and only the trace being analyzed is ever decoded
into objects, so memory stays a small multiple of one trace, not of the whole export.
"""

from __future__ import annotations

import contextlib
import mmap
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec

from trace_analysis.errors import AnalyzerError
from trace_analysis.jaeger_format import JaegerTrace, decode_envelope, decode_trace


@contextlib.contextmanager
def open_export(path: Path | str) -> Iterator[tuple[list[msgspec.Raw], str]]:
    """The undecoded traces of a Jaeger export and the name to give it in messages.

    ``"-"`` reads standard input. Raises :class:`AnalyzerError` naming the file and the cause
    for a missing, unreadable, empty, non-JSON or wrongly shaped file.
    """
    if str(path) == "-":
        yield _traces_of(sys.stdin.buffer.read(), "<stdin>"), "<stdin>"
        return
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise AnalyzerError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AnalyzerError(f"{path}: is a directory, not a Jaeger JSON export") from None
    except OSError as exc:
        raise AnalyzerError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        if not path.is_file() or path.stat().st_size == 0:
            raise AnalyzerError(f"{path}: file is empty, not a Jaeger JSON export")
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield _traces_of(mapped, str(path)), str(path)
        finally:
            # the undecoded traces point into the mapping; once they are gone it closes now,
            # else when the last of them is collected
            with contextlib.suppress(BufferError):
                mapped.close()


def iter_file_traces(path: Path | str) -> Iterator[JaegerTrace]:
    """Yield the traces of a Jaeger export (see :func:`open_export`), decoded one by one."""
    with open_export(path) as (raws, source):
        yield from decode_each(raws, source)
        raws.clear()


def decode_each(raws: list[msgspec.Raw], source: str) -> Iterator[JaegerTrace]:
    """Decode the traces one by one; messages number them from 1, in file order."""
    for index in range(len(raws)):
        yield decode_trace(raws[index], source, index)


def _traces_of(buffer: bytes | mmap.mmap, source: str) -> list[msgspec.Raw]:
    if len(buffer) <= 65536 and not bytes(buffer).strip():
        raise AnalyzerError(f"{source}: file is empty, not a Jaeger JSON export")
    return decode_envelope(buffer, source)
