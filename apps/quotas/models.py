"""API keys of service callers (signing, operators' tools): stored hashed, shown once."""

from __future__ import annotations

import uuid

from django.db import models


class ApiKey(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    # The key is `hp_<prefix>_<secret>`; the prefix finds the row, the secret is kept only as
    # SHA-256 (it has 256 bits of entropy, so a slow hash buys nothing).
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list, blank=True, help_text='e.g. ["audit:read", "signing"]')
    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute; empty: the policy's")
    daily = models.PositiveIntegerField(null=True, blank=True)
    monthly = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (hp_{self.prefix}_…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None
