"""Accounts' public face: give a user a key, rotate a key (the new one shown once), retire rotated keys."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import ApiKeyOwner
from apps.quotas.models import ApiKey
from apps.quotas.services import api_key_create, api_keys_revoke
from homepocket.api.errors import ApplicationError


class ApiKeyNotYours(ApplicationError):
    code = "NOT_FOUND"  # another account's key is answered exactly like a key that does not exist
    default_message = "No such API key in this account."


class ApiKeyNotRotatable(ApplicationError):
    code = "INVALID_STATE"
    default_message = "This API key is revoked or already rotated."


def account_api_key_create(*, user, name: str, scopes: list[str] | None = None, rpm=None, daily=None, monthly=None) -> tuple[ApiKey, str]:
    """A new key owned by `user`; returns (row, the key in clear, shown this once)."""
    with transaction.atomic():
        key, clear = api_key_create(name=name, scopes=scopes, rpm=rpm, daily=daily, monthly=monthly)
        ApiKeyOwner.objects.create(api_key=key, user=user)
    return key, clear


def account_api_key_rotate(*, user, api_key_id) -> tuple[ApiKey, str]:
    """Replace one of the user's keys by a new one with the same scopes and quotas.

    The old key keeps working for API_KEY_ROTATION_GRACE_SECONDS, so the caller can deploy the new
    one, and is then revoked by `accounts.rotated_keys_retire`. Returns (new row, new key in clear).
    """
    with transaction.atomic():
        owner = (
            ApiKeyOwner.objects.select_for_update().select_related("api_key")
            .filter(user=user, api_key_id=api_key_id).first()
        )  # fmt: skip
        if owner is None:
            raise ApiKeyNotYours()
        old = owner.api_key
        if old.is_revoked or owner.replaced_by_id is not None:
            raise ApiKeyNotRotatable()
        new, clear = api_key_create(name=old.name, scopes=old.scopes, rpm=old.rpm, daily=old.daily, monthly=old.monthly)
        ApiKeyOwner.objects.create(api_key=new, user=user)
        owner.replaced_by = new
        owner.retires_at = timezone.now() + timedelta(seconds=settings.API_KEY_ROTATION_GRACE_SECONDS)
        owner.save(update_fields=["replaced_by", "retires_at"])
    return new, clear


def rotated_keys_retire(*, now=None) -> int:
    """Revoke every rotated key whose grace has run out; returns how many were revoked."""
    now = now or timezone.now()
    due = list(
        ApiKeyOwner.objects.filter(retires_at__lte=now, api_key__revoked_at__isnull=True).values_list("api_key_id", flat=True)
    )
    return api_keys_revoke(key_ids=due) if due else 0
