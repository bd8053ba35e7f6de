"""Audit events: who did what, with device and book ids only as keyed hashes, in a hash chain."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class EventType(models.TextChoices):
    BOOK_CREATED = "book.created", "book created"
    DEVICE_PAIRED = "device.paired", "device paired"
    DEVICE_REVOKED = "device.revoked", "device revoked"
    PAIRING_FAILED = "pairing.failed", "pairing failed"
    TOKEN_REFUSED = "token.refused", "token refused"
    PHOTO_UPLOADED = "photo.uploaded", "photo uploaded"
    PHOTO_DELETED = "photo.deleted", "photo deleted"
    SHARE_DELIVERY_CHANGED = "share_delivery.changed", "share delivery state changed"
    SIGNING_KEY_CREATED = "signing_key.created", "signing key created"
    # One row per key per minute with a count, never one row per signature.
    SIGNING_USAGE = "signing.usage", "signing usage"
    QUOTA_EXCEEDED = "quota.exceeded", "quota exceeded"
    # Operators' changes in the admin (Django's LogEntry holds no hashed ids and no chain).
    POLICY_CHANGED = "policy.changed", "rate-limit policy changed"
    API_KEY_CREATED = "api_key.created", "API key created"
    API_KEY_REVOKED = "api_key.revoked", "API key revoked"
    # A device's or API key's earlier tokens refused from now on (apps/pairing, apps/quotas).
    DEVICE_TOKENS_REVOKED = "device.tokens_revoked", "device tokens revoked"
    API_KEY_ROTATED = "api_key.rotated", "API key rotated"
    # Abuse signals (apps/quotas/abuse.py): a flag, and the suspension of an API key it caused.
    ABUSE_FLAGGED = "abuse.flagged", "abuse signal flagged"
    ABUSE_RESOLVED = "abuse.resolved", "abuse flag resolved"
    API_KEY_SUSPENDED = "api_key.suspended", "API key suspended"
    API_KEY_SUSPENSION_LIFTED = "api_key.suspension_lifted", "API key suspension lifted"
    # Hot configuration changed by an operator (apps/cluster).
    CONFIG_CHANGED = "config.changed", "runtime configuration changed"
    # Server backups (docs/backups.md): each run, restore, deletion, retention pass, hold and access.
    BACKUP_RUN = "backup.run", "backup run"
    BACKUP_RESTORED = "backup.restored", "backup restored or test-restored"
    BACKUP_VERIFIED = "backup.verified", "backup repository verified"
    BACKUP_DELETED = "backup.deleted", "backup snapshots forgotten or chunks pruned"
    BACKUP_RETENTION = "backup.retention", "backup retention applied"
    BACKUP_HOLD = "backup.hold", "backup legal hold set or released"
    BACKUP_ACCESSED = "backup.accessed", "backup catalog or schedules accessed"
    BACKUP_SCHEDULE_CHANGED = "backup.schedule_changed", "backup schedule changed"


class Outcome(models.TextChoices):
    SUCCESS = "success", "success"
    FAILURE = "failure", "failure"


class AuditEvent(models.Model):
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    event_type = models.CharField(max_length=48, choices=EventType.choices, db_index=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    # HMAC-SHA256 of the raw id under the server's audit key: linkable, never reversible.
    actor_device = models.CharField(max_length=64, blank=True, db_index=True)
    book = models.CharField(max_length=64, blank=True, db_index=True)
    api_key_id = models.CharField(max_length=64, blank=True)
    target = models.CharField(max_length=128, blank=True)
    details = models.JSONField(default=dict, blank=True)
    # The chain: row_hash = SHA-256(prev_hash + this row's canonical content).
    prev_hash = models.CharField(max_length=64)
    row_hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.outcome} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class AuditChainHead(models.Model):
    """One row: the hash of the last event. Locking it serialises appends, so the chain never forks."""

    last_hash = models.CharField(max_length=64)
    # The prev_hash the oldest retained row must carry: the genesis, then whatever retention
    # purged up to. Removing old rows any other way breaks verify.
    anchor_hash = models.CharField(max_length=64, default="0" * 64)
