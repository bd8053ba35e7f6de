"""API keys of service callers (signing, operators' tools): stored hashed, shown once."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


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
    # An API key has no tokens of its own to date: bumping its session rotates the secret. The
    # key strings issued before this time (the retired secret) are refused with `token_revoked`.
    tokens_valid_after = models.DateTimeField(null=True, blank=True)
    retired_secret_hash = models.CharField(max_length=64, blank=True, editable=False)
    # Set when an abuse flag suspended the key (ABUSE_SUSPEND_API_KEYS, docs/quotas.md): refused
    # with 403 API_KEY_SUSPENDED until an operator lifts it in the admin.
    suspended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (hp_{self.prefix}_…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class Plan(models.TextChoices):
    FREE = "free", "free"
    PAID = "paid", "paid"
    # Service callers with an API key (signing, operators' tools): not a book's plan.
    SERVICE = "service", "service (API keys)"


class Subject(models.TextChoices):
    DEVICE = "device", "device"
    BOOK = "book", "book"
    API_KEY = "api_key", "API key"
    IP = "ip", "client IP"


class Window(models.TextChoices):
    # Short windows slide (exact: never more than `limit` in any such span); day and month are
    # calendar windows in UTC, the way people read a quota ("100 a day", reset at midnight UTC).
    MINUTE = "minute", "1 minute (sliding)"
    TEN_MINUTES = "10min", "10 minutes (sliding)"
    HOUR = "hour", "1 hour (sliding)"
    DAY = "day", "calendar day, UTC"
    MONTH = "month", "calendar month, UTC"


class FailMode(models.TextChoices):
    OPEN = "open", "open: allow when the store is down"
    CLOSED = "closed", "closed: refuse (503 RETRY_LATER) when the store is down"


class Policy(models.Model):
    """One limit on one endpoint for one plan; edited in the admin, seen by every node within seconds."""

    scope = models.CharField(max_length=64, help_text='What is limited, e.g. "pairing.generate".')
    plan = models.CharField(max_length=16, choices=Plan.choices)
    subject = models.CharField(max_length=16, choices=Subject.choices, help_text="Who is counted.")
    limit = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: unlimited.")
    window = models.CharField(max_length=16, choices=Window.choices)
    fail_mode = models.CharField(max_length=8, choices=FailMode.choices)
    description = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "plan"]
        verbose_name_plural = "policies"
        constraints = [models.UniqueConstraint(fields=["scope", "plan"], name="quotas_policy_scope_plan")]

    def __str__(self) -> str:
        limit = "unlimited" if self.limit is None else f"{self.limit} per {self.get_window_display()}"
        return f"{self.scope} [{self.plan}]: {limit}"


class QuotaNotification(models.Model):
    """A subject passed 80% of a daily or monthly quota: one row per subject, policy and window."""

    scope = models.CharField(max_length=64)
    plan = models.CharField(max_length=16, choices=Plan.choices)
    subject = models.CharField(max_length=80, db_index=True, help_text='"book:<id>", "device:<id>" or "api_key:<id>".')
    window_start = models.DateTimeField()
    used = models.PositiveIntegerField()
    limit = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "subject", "window_start"], name="quotas_notification_once_per_window")
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.used}/{self.limit} of {self.scope}"


class AbuseSignal(models.TextChoices):
    RATE_SPIKE = "rate_spike", "rate spike"
    MANY_IPS = "many_ips", "many client addresses"


class AbuseAction(models.TextChoices):
    NONE = "", "flagged only"
    SUSPENDED = "suspended", "API key suspended"


class AbuseFlag(models.Model):
    """An abuse signal raised for an API key or a device (apps/quotas/abuse.py): counts, never addresses."""

    subject_kind = models.CharField(max_length=16, choices=[(Subject.API_KEY, "API key"), (Subject.DEVICE, "device")])
    subject_id = models.CharField(max_length=64, db_index=True)
    signal = models.CharField(max_length=16, choices=AbuseSignal.choices)
    # What was seen: {"minute", "requests", "baseline", "threshold"} or {"distinct_ips", "window_minutes", "limit"}.
    observed = models.JSONField(default=dict)
    action = models.CharField(max_length=16, choices=AbuseAction.choices, blank=True, default=AbuseAction.NONE)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=64, blank=True, help_text="The admin user id who resolved it.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One open flag per subject and signal, however many nodes see the pattern (no flood).
            models.UniqueConstraint(
                fields=["subject_kind", "subject_id", "signal"], condition=models.Q(resolved_at__isnull=True),
                name="quotas_abuseflag_one_open_per_subject_signal",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_signal_display()} of {self.subject_kind}:{self.subject_id}"
