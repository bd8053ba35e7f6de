"""The signing app's refusals, each one documented code (homepocket/api/errors.py)."""

from __future__ import annotations

import random

from homepocket.api.errors import ApplicationError


def retry_after_headers(low_ms: int, high_ms: int) -> tuple[dict[str, str], dict[str, int]]:
    """Retry-After in (fractional) seconds with jitter, and the same in details as milliseconds."""
    ms = random.randint(low_ms, high_ms)
    return {"Retry-After": f"{ms / 1000:.3f}"}, {"retry_after_ms": ms}


class SigningKeyNotFound(ApplicationError):
    code = "INVALID_KEY"
    default_message = "No signing key with this id belongs to the caller."


class UnlockRequired(ApplicationError):
    code = "UNLOCK_REQUIRED"
    default_message = "The signing key is being unlocked; retry shortly."

    def __init__(self):
        headers, details = retry_after_headers(50, 200)
        super().__init__(headers=headers, details=details)


class SignerRetryLater(ApplicationError):
    code = "RETRY_LATER"
    default_message = "The signer is overloaded or unreachable; retry shortly."

    def __init__(self, reason: str):
        headers, details = retry_after_headers(200, 1000)
        super().__init__(headers=headers, details={**details, "reason": reason})
