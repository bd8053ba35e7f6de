"""Wire shapes of the pairing API (snake_case, keys as standard base64)."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field(
    {
        "type": "string",
        "pattern": "^[A-Za-z0-9+/]{43}=$",
        "description": "Ed25519 public key: 32 raw bytes, standard base64 (44 characters).",
    }
)
class PublicKeyField(serializers.CharField):
    """A raw 32-byte Ed25519 public key exchanged as standard base64 (44 characters)."""

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        if len(text) != 44:
            raise serializers.ValidationError("An Ed25519 public key is 44 characters of standard base64.")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError("Not standard base64.") from None
        if len(raw) != 32:
            raise serializers.ValidationError("An Ed25519 public key is 32 bytes.")
        try:
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise serializers.ValidationError("Not a valid Ed25519 public key.") from None
        return raw

    def to_representation(self, value):
        return base64.b64encode(bytes(value)).decode()


@extend_schema_field(
    {
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": "^[^\\u0000-\\u001f\\u007f]*$",
        "description": "A label for the device, 1-64 characters, no control characters (apps may encrypt it).",
    }
)
class DeviceNameField(serializers.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("min_length", 1)
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("help_text", "A label for the device, 1-64 characters (apps may encrypt it).")
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            raise serializers.ValidationError("Control characters are not allowed.")
        return text


class BookCreateInputSerializer(serializers.Serializer):
    device_id = serializers.UUIDField(help_text="The id the device chose for itself; the token's sub.")
    public_key = PublicKeyField()
    device_name = DeviceNameField()


class BookCreatedSerializer(serializers.Serializer):
    book_id = serializers.UUIDField()
    device_id = serializers.UUIDField()


class DeviceSerializer(serializers.Serializer):
    device_id = serializers.UUIDField(source="id")
    public_key = PublicKeyField()
    device_name = serializers.CharField(source="name")
    last_active_at = serializers.DateTimeField(allow_null=True)
    is_current = serializers.BooleanField(help_text="True for the device whose token made this request.")


class DeviceListSerializer(serializers.Serializer):
    devices = DeviceSerializer(many=True)
    total_count = serializers.IntegerField()


@extend_schema_field({"type": "string", "pattern": "^[0-9]{6}$", "description": "Six digits, 000000-999999."})
class ShortCodeField(serializers.CharField):
    """Any string up to 16 characters is accepted here; a malformed code is INVALID_SHORT_CODE,
    like a wrong one, and counts as a failed guess."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 16)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


class PairingGenerateInputSerializer(serializers.Serializer):
    book_id = serializers.UUIDField()


class PairingCodeSerializer(serializers.Serializer):
    short_code = serializers.CharField()
    expires_at = serializers.DateTimeField()
    ttl_seconds = serializers.IntegerField()


class PairingVerifyInputSerializer(serializers.Serializer):
    short_code = ShortCodeField()
    public_key = PublicKeyField()
    device_name = DeviceNameField()


class PairingMatchSerializer(serializers.Serializer):
    matched = serializers.BooleanField()
    peer_public_key = serializers.CharField(help_text="The initiator's Ed25519 key, standard base64.")
    peer_device_id = serializers.UUIDField()
    book_id = serializers.UUIDField()
    device_id = serializers.UUIDField()


class PairingExchangeInputSerializer(serializers.Serializer):
    short_code = ShortCodeField()


class PairingExchangeQuerySerializer(serializers.Serializer):
    wait = serializers.IntegerField(
        min_value=0, max_value=30, required=False, default=0,
        help_text="Long poll: answer as soon as the joiner has verified, or after this many seconds (at most 30).",
    )  # fmt: skip


class PairingExchangeSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["waiting", "completed"])
    peer_public_key = serializers.CharField(required=False, help_text="The joiner's key (completed only).")
    peer_device_id = serializers.UUIDField(required=False)


class DeviceRevokedSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    revoked_at = serializers.DateTimeField()
