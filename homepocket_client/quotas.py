"""The caller's quotas (GET /api/v1/usage) as typed values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from homepocket_client.books import documented_shape
from homepocket_client.envelope import Envelope


@dataclass(frozen=True)
class QuotaUsage:
    """One policy that counts the caller; `limit` None means unlimited (and `used` is not counted)."""

    policy: str
    subject: str
    window: str
    limit: int | None
    used: int | None
    remaining: int | None
    reset: int | None  # epoch seconds
    fail_mode: str


@dataclass(frozen=True)
class QuotaWarning:
    """The caller passed 80% of a daily or monthly quota in the window starting `window_start`."""

    policy: str
    subject: str
    used: int
    limit: int
    window_start: datetime
    created_at: datetime


@dataclass(frozen=True)
class Usage:
    plan: str
    quotas: dict[str, QuotaUsage]  # by policy
    warnings: list[QuotaWarning]


def usage_parse(envelope: Envelope) -> Usage:
    """Parse the answer of GET /api/v1/usage."""
    with documented_shape("usage", envelope):
        data = envelope.data
        quotas = {q["policy"]: QuotaUsage(**q) for q in data["quotas"]}
        warnings = [
            QuotaWarning(
                policy=n["policy"], subject=n["subject"], used=n["used"], limit=n["limit"],
                window_start=datetime.fromisoformat(n["window_start"]), created_at=datetime.fromisoformat(n["created_at"]),
            )
            for n in data["notifications"]
        ]  # fmt: skip
        return Usage(plan=data["plan"], quotas=quotas, warnings=warnings)
