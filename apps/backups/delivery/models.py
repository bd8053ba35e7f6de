"""Share deliveries, their state history, the request nonces they answered, and the server's signing key.

A share is stored only wrapped by the master key (signer/custody.py) with the delivery id as
context, so a wrapped share cannot be moved onto another row; the server never stores or logs it
in clear.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING", "pending"
    DELIVERED = "DELIVERED", "delivered"
    CONFIRMED = "CONFIRMED", "confirmed"
    FAILED = "FAILED", "failed"


ACTIVE_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.DELIVERED)


class ShareDelivery(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    book = models.ForeignKey("pairing.Book", on_delete=models.CASCADE, related_name="share_deliveries")
    backup_id = models.UUIDField(db_index=True)
    recipient_device = models.ForeignKey("pairing.Device", on_delete=models.CASCADE, related_name="share_deliveries")
    depositor_device_id = models.UUIDField()
    # custody.wrap(share, context=b"homepocket/share/" + id.bytes); never the share itself.
    wrapped_share = models.BinaryField()
    master_key_id = models.CharField(max_length=256, db_index=True)
    # SHA-256 of the share (hex): what a confirm must match. A share is uniformly random bytes
    # (a k-of-n split), so its hash reveals nothing a guess could use.
    share_sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # Not confirmed by then: the expiry task fails it.
    deadline_at = models.DateTimeField(db_index=True)
    # After a failed attempt the next request is answered RETRY_LATER until then (server backoff).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    retry_count = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # At most one live delivery per (backup, recipient): a replacing deposit fails the old
            # one first, and two racing deposits cannot both be live.
            models.UniqueConstraint(
                fields=["backup_id", "recipient_device"],
                condition=Q(status__in=["PENDING", "DELIVERED"]),
                name="share_delivery_one_active",
            ),
        ]
        indexes = [models.Index(fields=["status", "deadline_at"], name="share_delivery_status_deadline")]
        verbose_name_plural = "share deliveries"

    def __str__(self) -> str:
        return f"share delivery {self.id} ({self.status})"


class ShareDeliveryTransition(models.Model):
    """One row per state change, written in the same transaction as the conditional UPDATE."""

    delivery = models.ForeignKey(ShareDelivery, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, choices=DeliveryStatus.choices)
    reason = models.CharField(max_length=64)
    retry_count = models.PositiveSmallIntegerField(default=0)
    at = models.DateTimeField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status} ({self.reason})"


class ShareDeliveryRequest(models.Model):
    """A request nonce and the answer it got, so an exact retry gets the same answer back.

    The answer is ECIES ciphertext to the client's key: the server cannot read it either.
    """

    delivery = models.ForeignKey(ShareDelivery, on_delete=models.CASCADE, related_name="requests")
    device_id = models.UUIDField()
    nonce = models.CharField(max_length=128)
    # SHA-256 over the request's canonical fields: the same nonce with another body is a replay.
    body_sha256 = models.CharField(max_length=64)
    encrypted_share = models.BinaryField()
    signature = models.CharField(max_length=128)
    timestamp = models.BigIntegerField()
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device_id", "nonce"], name="share_request_nonce_once")]


class DeliveryServerKey(models.Model):
    """The server's secp256k1 key that signs delivery answers; one row, private half wrapped by custody."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    public_key = models.CharField(max_length=66, help_text="Compressed secp256k1 public key, hex.")
    wrapped_private_key = models.BinaryField()
    master_key_id = models.CharField(max_length=256)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"delivery server key {self.public_key[:16]}…"
