"""The request id: taken from X-Request-ID when it is a sane value, generated otherwise.

It lives in a context variable so that logs, the envelope and metrics all read the same value,
including from DRF views that asgiref runs in a worker thread (contextvars are copied there).
"""

from __future__ import annotations

import contextvars
import re
import uuid

HEADER = "X-Request-ID"
# Letters, digits and . _ - only, at most 128: enough for UUIDs and tracing ids, nothing that
# could split a log line or smuggle markup.
_SANE = re.compile(r"^[A-Za-z0-9._-]{8,128}$")

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def request_id_choose(candidate: str | None) -> str:
    if candidate and _SANE.match(candidate):
        return candidate
    return uuid.uuid4().hex


def request_id_get() -> str:
    return current_request_id.get()
