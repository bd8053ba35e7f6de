"""Wire shapes of share delivery (snake_case; shares and ciphertexts as standard base64, keys as hex)."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass

from coincurve import PublicKey
from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.backups.delivery.models import DeliveryStatus


@extend_schema_field({"type": "string", "format": "byte", "description": "Opaque share bytes, standard base64, at most 4 KiB decoded."})
class ShareField(serializers.CharField):
    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        if len(text) > 4 * ((settings.SHARE_DELIVERY_MAX_SHARE_BYTES + 2) // 3):
            raise serializers.ValidationError(f"A share is at most {settings.SHARE_DELIVERY_MAX_SHARE_BYTES} bytes.")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError("Not standard base64.") from None
        if not raw or len(raw) > settings.SHARE_DELIVERY_MAX_SHARE_BYTES:
            raise serializers.ValidationError(f"A share is 1 to {settings.SHARE_DELIVERY_MAX_SHARE_BYTES} bytes.")
        return raw


@extend_schema_field({"type": "string", "pattern": "^0[23][0-9a-f]{64}$",
                      "description": "Compressed secp256k1 public key, 33 bytes as 66 lowercase hex characters."})  # fmt: skip
class CompressedPublicKeyField(serializers.CharField):
    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        try:
            raw = bytes.fromhex(text)
            if len(raw) != 33 or raw[0] not in (2, 3):
                raise ValueError
            PublicKey(raw)
        except ValueError:
            raise serializers.ValidationError("Not a compressed secp256k1 public key (66 hex characters).") from None
        return raw


class ShareDepositInputSerializer(serializers.Serializer):
    backup_id = serializers.UUIDField()
    recipient_device_id = serializers.UUIDField()
    share = ShareField()


class ShareDepositedSerializer(serializers.Serializer):
    delivery_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)


class DeliveryRequestInputSerializer(serializers.Serializer):
    backup_id = serializers.UUIDField()
    client_public_key = CompressedPublicKeyField()
    timestamp = serializers.IntegerField(min_value=0, max_value=2**63 - 1, help_text="Unix seconds.")
    nonce = serializers.RegexField(r"^[A-Za-z0-9_-]{16,128}$", help_text="16-128 characters of [A-Za-z0-9_-], new per request.")


@dataclass(frozen=True)
class DeliveryRequestInput:
    backup_id: uuid.UUID
    client_public_key: bytes
    timestamp: int
    nonce: str


_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_KEY_HEX = re.compile(r"0[23][0-9a-fA-F]{64}")


def delivery_request_input_parse(data) -> DeliveryRequestInput:
    """A request's fields as DeliveryRequestInputSerializer validates them; raises its ValidationError.

    Both edges call this. Bodies as clients send them (canonical UUID, hex key, integer
    timestamp, bare nonce) are checked here directly, ~1 µs instead of the serializer's ~60 µs;
    anything else (other types, whitespace, other UUID spellings, missing fields) goes through the
    serializer itself, so what is accepted and every error message are the serializer's.
    """
    if type(data) is dict:
        backup_id, key, timestamp, nonce = (data.get(name) for name in ("backup_id", "client_public_key", "timestamp", "nonce"))
        if (
            type(backup_id) is str and _UUID_TEXT.fullmatch(backup_id)
            and type(key) is str and _KEY_HEX.fullmatch(key)
            and type(timestamp) is int and 0 <= timestamp <= 2**63 - 1
            and type(nonce) is str and _NONCE.fullmatch(nonce)
        ):  # fmt: skip
            raw_key = bytes.fromhex(key)
            try:
                PublicKey(raw_key)  # on the curve: the one check the pattern cannot make
            except ValueError:
                pass  # the serializer words the refusal
            else:
                return DeliveryRequestInput(uuid.UUID(backup_id), raw_key, timestamp, nonce)
    payload = DeliveryRequestInputSerializer(data=data)
    payload.is_valid(raise_exception=True)
    return DeliveryRequestInput(**payload.validated_data)


def delivery_answer_data(answer) -> dict:
    """The answer's wire fields (DeliveryAnswerSerializer's shape), for both edges."""
    return {
        "delivery_id": str(answer.delivery_id),
        "encrypted_share": base64.b64encode(answer.encrypted_share).decode(),
        "signature": answer.signature,
        "timestamp": answer.timestamp,
    }


class DeliveryAnswerSerializer(serializers.Serializer):
    delivery_id = serializers.UUIDField()
    encrypted_share = serializers.SerializerMethodField()
    signature = serializers.CharField(help_text="Compact secp256k1 ECDSA r ‖ s (64 bytes), hex.")
    timestamp = serializers.IntegerField(help_text="Unix seconds of the answer, as signed.")

    @extend_schema_field({"type": "string", "format": "byte"})
    def get_encrypted_share(self, answer) -> str:
        return base64.b64encode(answer.encrypted_share).decode()


class DeliveryConfirmInputSerializer(serializers.Serializer):
    delivery_id = serializers.UUIDField()
    received_successfully = serializers.BooleanField()
    share_sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", help_text="SHA-256 of the decrypted share, hex.")


class DeliveryStatusSerializer(serializers.Serializer):
    delivery_id = serializers.UUIDField(source="id")
    client_id = serializers.UUIDField(source="recipient_device_id", help_text="The recipient device.")
    backup_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    confirmed_at = serializers.DateTimeField(allow_null=True)
    retry_count = serializers.IntegerField()
    last_error = serializers.CharField(allow_blank=True)


class ServerKeySerializer(serializers.Serializer):
    algorithm = serializers.CharField()
    public_key = serializers.CharField(help_text="Compressed secp256k1 public key, hex: pin it.")
    fingerprint = serializers.CharField(help_text="SHA-256 of the 33 public key bytes, hex.")
