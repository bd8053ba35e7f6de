"""The one registry of error codes and the one application error type (CONVENTIONS 5).

docs/api.md lists the same table; tests/test_error_registry.py keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    meaning: str


_CODES = [
    ErrorCode("INVALID_ARGUMENT", 400, "A field is missing, malformed or out of range, or the body is not valid JSON."),
    ErrorCode("INVALID_SHORT_CODE", 400, "The pairing code is unknown, malformed or already used."),
    ErrorCode("SHORT_CODE_EXPIRED", 400, "The pairing code existed but its 5 minutes have passed."),
    ErrorCode("PHOTO_TOO_LARGE", 400, "The photo is larger than the 10 MiB cap or its declared size."),
    ErrorCode("REPLAY_DETECTED", 400, "A signed request or message was seen before or is too old."),
    ErrorCode("INVALID_TOKEN", 401, "The bearer token is missing, malformed, expired, not signed by the device's key, or the device is unknown or revoked."),
    ErrorCode("FORBIDDEN", 403, "The caller is authenticated but may not act on this book or resource."),
    ErrorCode("API_KEY_SUSPENDED", 403, "The API key is suspended after an abuse signal; an operator lifts the suspension in the admin."),
    ErrorCode("COMPLIANCE_VIOLATION", 403, "The operation would break a retention or compliance rule."),
    ErrorCode("NOT_FOUND", 404, "No endpoint at this path."),
    ErrorCode("BOOK_NOT_FOUND", 404, "No book with this id."),
    ErrorCode("DEVICE_NOT_FOUND", 404, "No device with this id in this book."),
    ErrorCode("PHOTO_NOT_FOUND", 404, "No photo with this id."),
    ErrorCode("INVALID_KEY", 404, "No signing key with this id belongs to the caller."),
    ErrorCode("DELIVERY_NOT_FOUND", 404, "No share delivery with this id (or for this backup) is addressed to the caller or its book."),
    ErrorCode("METHOD_NOT_ALLOWED", 405, "The endpoint does not accept this HTTP method."),
    ErrorCode("NOT_ACCEPTABLE", 406, "The endpoint cannot answer in a media type the Accept header allows (it answers application/json)."),
    ErrorCode("DEVICE_LIMIT_REACHED", 409, "The book already has its maximum number of devices."),
    ErrorCode("DEVICE_ALREADY_REGISTERED", 409, "This device id or public key is already registered."),
    ErrorCode("INVALID_STATE", 409, "The resource is not in a state that allows this operation."),
    ErrorCode("RECOVERY_TARGET_NOT_EMPTY", 409, "The recovery's target already holds data (rows or photo objects); recover over it only with overwrite."),
    ErrorCode("PAYLOAD_TOO_LARGE", 413, "The request body is larger than 1 MiB, or a relay payload larger than 256 KiB."),
    ErrorCode("UNSUPPORTED_MEDIA_TYPE", 415, "The body is not application/json."),
    ErrorCode("RATE_LIMIT_EXCEEDED", 429, "Too many requests; retry after the Retry-After header's seconds."),
    ErrorCode("INTERNAL_ERROR", 500, "An unexpected error; the request id identifies it in the logs."),
    ErrorCode("UNLOCK_REQUIRED", 503, "The signing key is not loaded yet; retry after Retry-After."),
    ErrorCode("MAINTENANCE", 503, "The service is in maintenance: reads work, changes are refused; retry after Retry-After."),
    ErrorCode("RETRY_LATER", 503, "The service is overloaded or a dependency is unreachable; retry after Retry-After."),
    ErrorCode("DATABASE_ERROR", 503, "The database is unreachable; retry later."),
    ErrorCode("S3_ERROR", 503, "Object storage is unreachable; retry later."),
]

ERROR_CODES: dict[str, ErrorCode] = {entry.code: entry for entry in _CODES}


def error_status(code: str) -> int:
    return ERROR_CODES[code].status


class ApplicationError(Exception):
    """An error a service raises on purpose; the exception handler renders it as the envelope."""

    code = "INTERNAL_ERROR"
    default_message = "Internal error."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code or self.code
        if self.code not in ERROR_CODES:
            raise ValueError(f"unregistered error code {self.code!r}")
        self.message = message or self.default_message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return error_status(self.code)


class Forbidden(ApplicationError):
    code = "FORBIDDEN"
    default_message = "Forbidden."
