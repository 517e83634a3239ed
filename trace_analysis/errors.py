"""The one exception type the CLI turns into a one-line message and exit status 2."""

from __future__ import annotations


class AnalyzerError(Exception):
    """A problem the user can fix (bad input, unreachable Jaeger, bad option).

    The message is shown as is, on one line, so it must name the cause and, where it helps,
    the fix; no traceback is ever printed for it.
    """


class JaegerUnreachable(AnalyzerError):
    """Nothing answers at the Jaeger query URL ``url`` (connection refused, unknown host)."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


class JaegerDeadlineExceeded(AnalyzerError):
    """Jaeger did not answer in time: silent past a read timeout, or still sending at the
    deadline of a query (a gateway timeout, where :class:`AnalyzerError` is a bad gateway)."""
