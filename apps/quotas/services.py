"""The quotas app's public face (API keys so far; the limiter follows in its issue)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.utils import timezone

from apps.quotas.models import ApiKey
from homepocket.api.errors import ApplicationError

KEY_PREFIX = "hp_"
LAST_USED_INTERVAL = timedelta(minutes=1)


class ApiKeyRefused(ApplicationError):
    code = "INVALID_TOKEN"
    default_message = "Invalid API key."

    def __init__(self, reason: str):
        super().__init__(details={"reason": reason}, headers={"WWW-Authenticate": "Api-Key"})


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(*, name: str, scopes: list[str] | None = None, rpm=None, daily=None, monthly=None) -> tuple[ApiKey, str]:
    """Create a key; returns (row, the key in clear). The clear key is never stored or shown again."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name, prefix=prefix, secret_hash=_secret_hash(secret), scopes=sorted(set(scopes or [])),
        rpm=rpm, daily=daily, monthly=monthly,
    )  # fmt: skip
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


def api_keys_revoke(*, key_ids: list) -> int:
    """Revoke keys: refused from now on. Returns how many were active."""
    return ApiKey.objects.filter(pk__in=key_ids, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_verify(presented: str) -> ApiKey:
    """The active key this string is, or ApiKeyRefused; compared in constant time."""
    if not presented.startswith(KEY_PREFIX) or presented.count("_") < 2:
        raise ApiKeyRefused("malformed")
    prefix, _, secret = presented[len(KEY_PREFIX) :].partition("_")
    key = ApiKey.objects.filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.secret_hash, _secret_hash(secret)):
        raise ApiKeyRefused("unknown_key")
    if key.is_revoked:
        raise ApiKeyRefused("revoked")
    now = timezone.now()
    if key.last_used_at is None or key.last_used_at < now - LAST_USED_INTERVAL:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)  # at most once a minute
    return key
