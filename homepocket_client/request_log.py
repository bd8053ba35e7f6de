"""What the client logs about a request, redacted at the source (CONVENTIONS 16).

One line per request: method, a path template, status, error code, request id and duration.
Never headers (tokens), bodies, keys, or query strings; ids and codes in the path are replaced
by placeholders so a log line does not tie a device to a book.
"""

from __future__ import annotations

import logging
import re

from homepocket_client.errors import TRANSPORT_ERROR

LOGGER_NAME = "homepocket_client"
logger = logging.getLogger(LOGGER_NAME)

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_DIGITS = re.compile(r"^\d+$")
# Route words are short; a long segment is a value (a token, a hash, an object key) whatever it looks like.
_LONGEST_ROUTE_WORD = 32


def path_template(path: str) -> str:
    """`/api/v1/books/<uuid>/devices?x=1` -> `/api/v1/books/{uuid}/devices`."""
    route = path.split("?", 1)[0].split("#", 1)[0]
    return "/".join(_segment_template(segment) for segment in route.split("/"))


def _segment_template(segment: str) -> str:
    if _UUID.match(segment):
        return "{uuid}"
    if _DIGITS.match(segment):
        return "{number}"
    if len(segment) > _LONGEST_ROUTE_WORD:
        return "{value}"
    return segment


def request_log(
    *,
    method: str,
    path: str,
    status: int | None,
    request_id: str | None,
    duration_seconds: float,
    error_code: str | None = None,
) -> None:
    """Log one finished request: DEBUG on success, INFO on an error envelope, WARNING on no envelope."""
    if error_code is None:
        level = logging.DEBUG
    elif status is None or error_code == TRANSPORT_ERROR:
        level = logging.WARNING
    else:
        level = logging.INFO
    if not logger.isEnabledFor(level):
        return
    template = path_template(path)
    duration_ms = round(duration_seconds * 1000, 1)
    logger.log(
        level,
        "%s %s -> %s %s request_id=%s duration_ms=%s",
        method,
        template,
        status if status is not None else "-",
        error_code or "ok",
        request_id or "-",
        duration_ms,
        extra={
            "http_method": method,
            "path_template": template,
            "status": status,
            "error_code": error_code,
            "request_id": request_id,
            "duration_ms": duration_ms,
        },
    )
