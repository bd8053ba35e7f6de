"""Accounts of API key holders: who owns which key, a key's requests per day, rotations in their grace."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.quotas.models import ApiKey


class ApiKeyOwner(models.Model):
    """A Django user owns an API key; its account page shows only the keys it owns."""

    api_key = models.OneToOneField(ApiKey, on_delete=models.CASCADE, primary_key=True, related_name="owner")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys_owned")
    # A rotated key: its successor, and when this one is revoked (API_KEY_ROTATION_GRACE_SECONDS after).
    replaced_by = models.OneToOneField(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces")
    retires_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        verbose_name = "API key owner"

    def __str__(self) -> str:
        return f"{self.api_key} owned by {self.user}"


class ApiKeyUsageDay(models.Model):
    """Requests made with a key on one UTC day, summed over every process (apps/accounts/usage.py)."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField()
    requests = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=["api_key", "day"], name="accounts_usage_once_per_day")]

    def __str__(self) -> str:
        return f"{self.api_key_id} {self.day}: {self.requests}"
