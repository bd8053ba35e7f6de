"""The one exception handler: every error of a DRF view, ours or the framework's, as the envelope.

Django-level errors outside DRF (unknown paths, crashes in middleware) go through
homepocket.api.django_handlers, and oversized bodies through homepocket.body_limit; all three use
the same registry and envelope, so a client sees one shape whatever failed.
"""

from __future__ import annotations

import logging
import math

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from homepocket.api.errors import ApplicationError, error_status

logger = logging.getLogger("homepocket.api")

# DRF's exception classes, in the order they are tested (subclasses before their bases).
_DRF_CODES: list[tuple[type[Exception], str, str | None]] = [
    (drf.ParseError, "INVALID_ARGUMENT", "The request body is not valid JSON."),
    (drf.ValidationError, "INVALID_ARGUMENT", "The request has invalid fields."),
    (drf.NotAuthenticated, "INVALID_TOKEN", "Authentication credentials were not provided."),
    (drf.AuthenticationFailed, "INVALID_TOKEN", None),
    (drf.PermissionDenied, "FORBIDDEN", None),
    (drf.NotFound, "NOT_FOUND", "Not found."),
    (drf.MethodNotAllowed, "METHOD_NOT_ALLOWED", None),
    (drf.NotAcceptable, "NOT_ACCEPTABLE", None),
    (drf.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", None),
    (drf.Throttled, "RATE_LIMIT_EXCEEDED", None),
]


def envelope_exception_handler(exc, context):
    """Turn any exception raised in a DRF view into (status, {"code", "message", "details"})."""
    headers: dict[str, str] = {}
    if isinstance(exc, ApplicationError):
        code, message, details = exc.code, exc.message, exc.details
        headers.update(exc.headers)
    elif isinstance(exc, RequestDataTooBig):
        code, message, details = "PAYLOAD_TOO_LARGE", "The request body is larger than allowed.", {}
    elif isinstance(exc, SuspiciousOperation):
        # A Host outside ALLOWED_HOSTS (met when a view builds an absolute URL), a malformed
        # header: the client's fault, as Django's own handler400 says, not a crash.
        logger.warning("suspicious request refused", extra={"error_class": type(exc).__name__})
        code, message, details = "INVALID_ARGUMENT", "The request is malformed (host or header).", {}
    elif isinstance(exc, Http404):
        code, message, details = "NOT_FOUND", "Not found.", {}
    elif isinstance(exc, DjangoPermissionDenied):
        code, message, details = "FORBIDDEN", "Forbidden.", {}
    elif isinstance(exc, drf.APIException):
        code, message, details = _drf_error(exc)
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if isinstance(exc, drf.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
    elif isinstance(exc, (OperationalError, InterfaceError)):
        logger.error("database unavailable", extra={"error_class": type(exc).__name__})
        code, message, details = "DATABASE_ERROR", "The database is unavailable; retry later.", {}
        headers["Retry-After"] = "5"
    else:
        logger.exception("unhandled error in view", extra={"error_class": type(exc).__name__})
        code, message, details = "INTERNAL_ERROR", "Internal error.", {}
    response = Response({"code": code, "message": message, "details": details}, status=error_status(code), headers=headers)
    response.exception = True
    return response


def _drf_error(exc: drf.APIException) -> tuple[str, str, dict]:
    for exc_class, code, message in _DRF_CODES:
        if isinstance(exc, exc_class):
            break
    else:
        code, message = ("INTERNAL_ERROR", "Internal error.") if exc.status_code >= 500 else ("INVALID_ARGUMENT", None)
    details: dict = {}
    if isinstance(exc, drf.ValidationError):
        details = {"fields": exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}}
    return code, message or _text(exc.detail), details


def _text(detail) -> str:
    if isinstance(detail, (list, tuple)) and detail:
        return str(detail[0])
    return str(detail)
