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

from trace_analysis.errors import AnalyzerError
from trace_analysis.jaeger_format import JaegerTrace, decode_envelope, decode_trace


def iter_file_traces(path: Path | str) -> Iterator[JaegerTrace]:
    """Yield the traces of a Jaeger export; ``"-"`` reads standard input.

    Raises :class:`AnalyzerError` naming the file and the cause for a missing, unreadable,
    empty, non-JSON or wrongly shaped file.
    """
    if str(path) == "-":
        data = sys.stdin.buffer.read()
        yield from _iter_buffer(data, "<stdin>")
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
            yield from _iter_buffer(mapped, str(path))
        finally:
            # the undecoded traces point into the mapping; they are gone once the generator
            # above has finished, and if not, the mapping is closed when they are collected
            with contextlib.suppress(BufferError):
                mapped.close()


def _iter_buffer(buffer: bytes | mmap.mmap, source: str) -> Iterator[JaegerTrace]:
    if len(buffer) <= 65536 and not bytes(buffer).strip():
        raise AnalyzerError(f"{source}: file is empty, not a Jaeger JSON export")
    raws = decode_envelope(buffer, source)
    for index in range(len(raws)):
        trace = decode_trace(raws[index], source, index)
        yield trace
    del raws
