"""Typed errors: one class per thing an app can do about a failure, each carrying the server's code.

The server answers every failure with an error code (homepocket/api/errors.py). Apps act on the
class (re-authenticate, back off, re-pair) and read `code` when they need the exact reason, e.g.
SHORT_CODE_EXPIRED versus INVALID_SHORT_CODE, both InvalidArgument. A code this version does not
know maps by its HTTP status, so a newer server never breaks an older app.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any


class HomePocketError(Exception):
    """Any failure of a Home Pocket request; `request_id` finds it in the server's logs."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}
        self.request_id = request_id
        super().__init__(f"{code}: {message}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, request_id={self.request_id!r})"


class InvalidArgument(HomePocketError):
    """400: the request was malformed or refused as given; retrying it unchanged will not help."""


class InvalidToken(HomePocketError):
    """401: the token was refused, or the device is unknown or revoked (check `details["reason"]`)."""


class Forbidden(HomePocketError):
    """403: the device is authenticated but may not act on this book or resource."""


class NotFound(HomePocketError):
    """404: no such book, device, photo, key or endpoint."""


class UnsupportedRequest(HomePocketError):
    """405, 406, 415: the method or media type is wrong; a bug in the caller, not a user error."""


class Conflict(HomePocketError):
    """409: the book or device is not in a state that allows this (device limit, already registered)."""


class PayloadTooLarge(HomePocketError):
    """413: the body is over the server's size cap."""


class RetryableError(HomePocketError):
    """A failure that goes away by waiting; `retry_after` is the server's wait in seconds, if it gave one."""

    def __init__(self, code: str, message: str, *, retry_after: int | None = None, **kwargs: Any) -> None:
        super().__init__(code, message, **kwargs)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """429: a rate limit or quota was hit."""


class ServiceUnavailable(RetryableError):
    """503: the server or one of its dependencies is overloaded, down or locked for now."""


class ServerError(HomePocketError):
    """500 and unknown 5xx: a server bug; report the request id."""


# The code of a TransportError; never sent by the server, so it cannot collide with one.
TRANSPORT_ERROR = "TRANSPORT_ERROR"


class TransportError(HomePocketError):
    """No envelope came back: connection refused, timeout, or an answer that is not the protocol.

    `status` is the HTTP status when a non-envelope answer arrived (a proxy's 502 page, say),
    None when nothing did.
    """

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(TRANSPORT_ERROR, message, status=status, request_id=request_id)

# The one mapping from the server's codes to classes; it mirrors homepocket/api/errors.py.
ERROR_CLASSES: dict[str, type[HomePocketError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "INVALID_SHORT_CODE": InvalidArgument,
    "SHORT_CODE_EXPIRED": InvalidArgument,
    "PHOTO_TOO_LARGE": InvalidArgument,
    "REPLAY_DETECTED": InvalidArgument,
    "INVALID_TOKEN": InvalidToken,
    "FORBIDDEN": Forbidden,
    "API_KEY_SUSPENDED": Forbidden,
    "COMPLIANCE_VIOLATION": Forbidden,
    "NOT_FOUND": NotFound,
    "BOOK_NOT_FOUND": NotFound,
    "DEVICE_NOT_FOUND": NotFound,
    "PHOTO_NOT_FOUND": NotFound,
    "INVALID_KEY": NotFound,
    "DELIVERY_NOT_FOUND": NotFound,
    "METHOD_NOT_ALLOWED": UnsupportedRequest,
    "NOT_ACCEPTABLE": UnsupportedRequest,
    "UNSUPPORTED_MEDIA_TYPE": UnsupportedRequest,
    "DEVICE_LIMIT_REACHED": Conflict,
    "DEVICE_ALREADY_REGISTERED": Conflict,
    "INVALID_STATE": Conflict,
    "RECOVERY_TARGET_NOT_EMPTY": Conflict,
    "PAYLOAD_TOO_LARGE": PayloadTooLarge,
    "RATE_LIMIT_EXCEEDED": RateLimited,
    "INTERNAL_ERROR": ServerError,
    "UNLOCK_REQUIRED": ServiceUnavailable,
    "RETRY_LATER": ServiceUnavailable,
    "DATABASE_ERROR": ServiceUnavailable,
    "S3_ERROR": ServiceUnavailable,
    "MAINTENANCE": ServiceUnavailable,
}

_STATUS_CLASSES: dict[int, type[HomePocketError]] = {
    400: InvalidArgument,
    401: InvalidToken,
    403: Forbidden,
    404: NotFound,
    405: UnsupportedRequest,
    406: UnsupportedRequest,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedRequest,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_class_for(code: str, status: int) -> type[HomePocketError]:
    """The class for a code, or for the status when the code is newer than this library."""
    if code in ERROR_CLASSES:
        return ERROR_CLASSES[code]
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    return ServerError if status >= 500 else HomePocketError


def error_from_response(
    *,
    code: str,
    message: str,
    status: int,
    details: dict[str, Any] | None,
    request_id: str | None,
    retry_after_header: str | None,
) -> HomePocketError:
    """Build the typed error for an error envelope."""
    error_class = error_class_for(code, status)
    kwargs: dict[str, Any] = {"status": status, "details": details, "request_id": request_id}
    if issubclass(error_class, RetryableError):
        kwargs["retry_after"] = retry_after_seconds(retry_after_header)
    return error_class(code, message, **kwargs)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> int | None:
    """Parse Retry-After (RFC 9110 10.2.3): delta-seconds or an HTTP-date; None when absent or garbled."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(0, math.ceil(delta))
