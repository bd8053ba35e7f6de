"""Start-up checks of the limiter's settings (CONVENTIONS 2)."""

from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.core.checks import Error, register


def shared_store_errors(*, engine: str, url: str | None) -> list[Error]:
    # Several nodes or workers on one database, each with its own in-memory counts, would each
    # allow the full limit: refuse to start rather than limit N times too loosely.
    if engine.endswith("postgresql") and not url:
        return [
            Error(
                "The distributed mode (DATABASE_URL) needs a shared rate-limit store.",
                hint="Set REDIS_URL (or RATELIMIT_REDIS_URL).",
                id="quotas.E002",
            )
        ]
    return []


@register()
def check_rate_limit_settings(app_configs, **kwargs):
    url = settings.RATELIMIT_REDIS_URL
    errors = shared_store_errors(engine=settings.DATABASES["default"]["ENGINE"], url=url)
    if url and urlparse(url).scheme not in ("redis", "rediss", "unix"):
        errors.append(Error("RATELIMIT_REDIS_URL must start with redis://, rediss:// or unix://.", id="quotas.E001"))
    if not 0 < settings.RATELIMIT_POLICY_TTL <= 10:
        errors.append(
            Error("RATELIMIT_POLICY_TTL must be between 0 and 10 seconds (policy edits apply within it).", id="quotas.E003")
        )
    if not 0 < settings.QUOTA_WARNING_RATIO < 1:
        errors.append(Error("QUOTA_WARNING_RATIO must be between 0 and 1.", id="quotas.E004"))
    errors += abuse_settings_errors()
    if settings.RATELIMIT_STORE_TIMEOUT <= 0 or settings.RATELIMIT_STORE_RETRY < 0:
        errors.append(Error("RATELIMIT_STORE_TIMEOUT must be positive and RATELIMIT_STORE_RETRY not negative.", id="quotas.E005"))
    return errors


def abuse_settings_errors() -> list[Error]:
    from homepocket.tally import SUBJECT_ADDRESSES_MAX

    wrong = []
    if settings.ABUSE_FLUSH_SECONDS <= 0 or settings.ABUSE_FLUSH_SECONDS > 60:
        wrong.append("ABUSE_FLUSH_SECONDS must be above 0 and at most 60 (a minute is judged at its flushes).")
    if settings.ABUSE_RATE_FACTOR <= 1 or settings.ABUSE_RATE_FLOOR < 1:
        wrong.append("ABUSE_RATE_FACTOR must be above 1 and ABUSE_RATE_FLOOR at least 1.")
    if not 0 < settings.ABUSE_BASELINE_WEIGHT <= 1 or settings.ABUSE_BASELINE_MIN_MINUTES < 1 or settings.ABUSE_BASELINE_DAYS < 1:
        wrong.append("ABUSE_BASELINE_WEIGHT must be in (0, 1]; ABUSE_BASELINE_MIN_MINUTES and ABUSE_BASELINE_DAYS at least 1.")
    if not 1 <= settings.ABUSE_IP_LIMIT < SUBJECT_ADDRESSES_MAX or not 1 <= settings.ABUSE_IP_WINDOW_MINUTES <= 60:
        wrong.append(f"ABUSE_IP_LIMIT must be 1 to {SUBJECT_ADDRESSES_MAX - 1} and ABUSE_IP_WINDOW_MINUTES 1 to 60.")
    return [Error(message, hint="docs/configuration.md, abuse signals", id="quotas.E006") for message in wrong]
