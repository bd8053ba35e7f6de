"""Books (a family's shared ledger) and the devices that belong to them."""

from __future__ import annotations

import base64
import uuid

from django.db import models


class Book(models.Model):
    class Plan(models.TextChoices):
        FREE = "free", "Free"
        PAID = "paid", "Paid"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    plan = models.CharField(max_length=8, choices=Plan.choices, default=Plan.FREE)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"book {self.id}"


class Device(models.Model):
    # The id is chosen by the device (a UUID it makes before it talks to us), so that its first
    # token can name itself in `sub` before the server has seen it.
    id = models.UUIDField(primary_key=True, editable=False)
    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="devices")
    # Raw 32-byte Ed25519 public key; unique, so one key can never stand for two devices.
    public_key = models.BinaryField(max_length=32, unique=True)
    name = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_active_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Tokens whose `iat` is before this are refused (docs/api.md, "token_revoked"): bumping it
    # signs the device out everywhere without revoking it. Whole seconds, rounded up, because
    # `iat` is whole seconds: a token minted in the very second of the bump is refused too.
    tokens_valid_after = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["book", "revoked_at"], name="device_book_active")]

    def __str__(self) -> str:
        return f"device {self.id}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(bytes(self.public_key)).decode()
