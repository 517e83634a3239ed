"""Whether a span failed, read the same way in every format, and what showed it.

OpenTelemetry's status (code ERROR, a description) reaches each format differently:

* OTLP: the span's ``status`` (``code`` 2, ``STATUS_CODE_ERROR`` or ``ERROR``; ``message``).
* Jaeger (the OpenTelemetry->Jaeger mapping): tags ``otel.status_code=ERROR`` and
  ``otel.status_description``, with ``error=true``.
* Zipkin (the OpenTelemetry->Zipkin mapping): tags ``otel.status_code=ERROR`` and ``error``
  holding the description (``""`` when there is none); exporters written before the mapping
  settled put the description in ``otel.status_description`` instead.

So, in every format, a span failed on: status code ERROR (any letter case; the integer 2 some
early exporters wrote), or an ``error`` tag that is not false (``true``, or a message: Zipkin's
convention, also kept by Jaeger for spans that came from Zipkin), or being a server span that
answered HTTP 5xx. Its message is the status description, else the ``error`` tag's message.
The evidence seen is kept (:data:`BY_STATUS`, :data:`BY_ERROR_TAG`, :data:`BY_HTTP_STATUS`)
so that a reason names only what the span really carried.
"""

from __future__ import annotations

STATUS_CODE = "otel.status_code"
STATUS_DESCRIPTION = "otel.status_description"
ERROR_TAG = "error"

BY_STATUS = "status ERROR"
BY_ERROR_TAG = "error tag"
BY_HTTP_STATUS = "HTTP status"

_ERROR_CODES = frozenset({"ERROR", "STATUS_CODE_ERROR", "2"})


def is_error_code(value: object) -> bool:
    """Whether a status code (as a tag or OTLP field writes it) is ERROR."""
    return value is not None and value is not False and str(value).upper() in _ERROR_CODES


def error_tag(value: object) -> tuple[bool, str | None]:
    """Whether an ``error`` tag says the span failed, and the message it holds, if any."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "false":
            return False, None
        return True, (value if lowered not in ("", "true") else None)
    return bool(value), None


def server_error(kind: str, http_status: int | None) -> bool:
    """A server span that answered HTTP 5xx failed (a client's 4xx/5xx is its callee's)."""
    return kind == "server" and http_status is not None and http_status >= 500


def evidence(status: bool, tag: bool, http: bool) -> str | None:
    """What showed the span failed, the strongest first; None when it did not fail."""
    if status:
        return BY_STATUS
    if tag:
        return BY_ERROR_TAG
    return BY_HTTP_STATUS if http else None
