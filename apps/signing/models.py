"""Signing keys: the public half in clear, the private half only as the signer wrapped it."""

from __future__ import annotations

import uuid

from django.db import models


class SigningKey(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The API key that created it is the only caller that may sign with it.
    api_key = models.ForeignKey("quotas.ApiKey", on_delete=models.PROTECT, related_name="signing_keys")
    public_key = models.CharField(max_length=66, help_text="Compressed secp256k1 public key, hex.")
    address = models.CharField(max_length=42, help_text="EIP-55 Ethereum address of the public key.")
    # AES-256-GCM of the private key under a data key (with the key id as associated data), and
    # that data key wrapped by the master key `master_key_id` (signer/custody.py). Never plaintext.
    wrapped_key = models.BinaryField()
    wrapped_dek = models.BinaryField()
    master_key_id = models.CharField(max_length=256, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Updated from the aggregated usage counts (apps/signing/usage.py), not per signature.
    last_used_at = models.DateTimeField(null=True, blank=True)
    use_count = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.address} ({self.id})"
