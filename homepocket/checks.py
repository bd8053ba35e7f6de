"""Start-up checks: misconfiguration fails before the first request, with an id and a hint."""

from __future__ import annotations

import os
from urllib.parse import urlparse

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


def database_engine_errors(engine: str) -> list[Error]:
    if engine in ("django.db.backends.postgresql", "django.db.backends.sqlite3"):
        return []
    return [
        Error(
            f"DATABASE_URL selects {engine}, which Home Pocket does not support.",
            hint="Use a postgres:// URL, or unset DATABASE_URL for the embedded SQLite database.",
            id="homepocket.E001",
        )
    ]


@register()
def check_modes(app_configs, **kwargs):
    errors = database_engine_errors(settings.DATABASES["default"]["ENGINE"])
    if settings.REDIS_URL and urlparse(settings.REDIS_URL).scheme not in ("redis", "rediss", "unix"):
        errors.append(
            Error(
                "REDIS_URL must start with redis://, rediss:// or unix://.",
                hint=f"Got scheme {urlparse(settings.REDIS_URL).scheme!r}.",
                id="homepocket.E002",
            )
        )

    s3_vars = sorted(name for name in os.environ if name.startswith("S3_") and os.environ[name])
    if s3_vars and not settings.S3_BUCKET:
        errors.append(
            Error(
                f"{', '.join(s3_vars)} set but S3_BUCKET is not: objects would silently go to the local directory.",
                hint="Set S3_BUCKET, or unset the S3_* variables for the embedded object directory.",
                id="homepocket.E003",
            )
        )
    if settings.MAX_REQUEST_BODY_BYTES <= 0:
        errors.append(Error("MAX_REQUEST_BODY_BYTES must be positive.", id="homepocket.E004"))
    if not 0 < settings.DEVICE_TOKEN_MAX_LIFETIME_SECONDS <= 24 * 3600:
        errors.append(
            Error(
                "DEVICE_TOKEN_MAX_LIFETIME_SECONDS must be between 1 and 86400 (24 hours).",
                id="homepocket.E005",
            )
        )
    if settings.LOG_FORMAT not in ("json", "text"):
        errors.append(Error("LOG_FORMAT must be 'json' or 'text'.", id="homepocket.E006"))
    return errors


@register(Tags.security, deploy=True)
def check_shared_secret(app_configs, **kwargs):
    from homepocket.env import env_secret

    if not (settings.DATABASE_URL or settings.REDIS_URL):
        return []
    # Secrets the embedded mode makes under var/: in a cluster every node would make its own
    # (sessions break across nodes; audit hashes of one device stop matching between nodes).
    return [
        Warning(
            f"{name} is the local one under var/: every node of a cluster would have its own.",
            hint=f"Set {name} or {name}_FILE in the distributed mode.",
            id="homepocket.W001",
        )
        for name in ("SECRET_KEY", "AUDIT_HASH_KEY")
        if not env_secret(name)
    ]
