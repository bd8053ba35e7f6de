"""Structured logs, redacted at the source (CONVENTIONS 16).

The RedactingFilter sits on every handler: whatever a library or our code logs, a bearer token,
an API key, a JWT or a base64 key never reaches the output. The JSON formatter redacts the final
line once more, so a value smuggled through an exception's text is caught too. Request bodies are
never logged by our code in the first place; the access log carries route templates, not paths.
"""

from __future__ import annotations

import logging
import re

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from homepocket.api.request_id import request_id_get

_PATTERNS = [
    # Authorization header values, however they are quoted.
    (re.compile(r"(?i)\b(bearer|api-key)\s+[^\s\"',;]+"), r"\1 [REDACTED]"),
    # JWTs anywhere: header.payload.signature, the first two base64url JSON objects.
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[REDACTED_JWT]"),
    # Standard base64 of 32 bytes (Ed25519/secp256k1 keys, digests) and longer blobs. Hex ids
    # and UUIDs are left alone: the pattern needs a '+', '/' or '=' or mixed case to match.
    (re.compile(r"(?<![A-Za-z0-9+/=])(?=[A-Za-z0-9+/]*[+/=])[A-Za-z0-9+/]{40,}={0,2}"), "[REDACTED_B64]"),
    (re.compile(r"(?<![A-Za-z0-9+/=_-])(?=[A-Za-z0-9]*[a-z])(?=[A-Za-z0-9]*[A-Z])[A-Za-z0-9]{40,}={0,2}"), "[REDACTED_B64]"),
    # Query parameters that carry credentials.
    (re.compile(r"(?i)\b(token|ticket|key|code|signature|password)=([^&\s\"']+)"), r"\1=[REDACTED]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string still gets logged, redacted
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_get()
        return True


class JsonFormatter(_LibraryJsonFormatter):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("timestamp", "ts")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__("%(levelname)s %(name)s %(message)s %(request_id)s", *args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
