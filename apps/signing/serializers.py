"""Wire shapes of the signing API (the schema), and the one parser of a sign request's fields."""

from __future__ import annotations

import uuid

from rest_framework import serializers

from homepocket.api.errors import ApplicationError

DIGEST_BYTES = 32


class InvalidSignArgument(ApplicationError):
    code = "INVALID_ARGUMENT"


def sign_input_parse(data) -> tuple[uuid.UUID, bytes]:
    """(key id, digest) from a sign request body, or INVALID_ARGUMENT naming the field."""
    if not isinstance(data, dict):
        raise InvalidSignArgument("The body must be a JSON object.")
    try:
        key_id = uuid.UUID(str(data.get("key_id")))
    except ValueError:
        raise InvalidSignArgument("key_id must be a UUID.", details={"field": "key_id"}) from None
    digest_hex = data.get("digest")
    try:
        digest = bytes.fromhex(digest_hex) if isinstance(digest_hex, str) else None
    except ValueError:
        digest = None
    if digest is None or len(digest) != DIGEST_BYTES:
        # We sign digests, never messages: exactly 32 bytes, so a message cannot be passed by mistake.
        raise InvalidSignArgument("digest must be the hex of exactly 32 bytes.", details={"field": "digest"})
    return key_id, digest


class SigningKeySerializer(serializers.Serializer):
    key_id = serializers.UUIDField(source="id")
    public_key = serializers.CharField(help_text="33-byte compressed secp256k1 public key, hex.")
    address = serializers.CharField(help_text="EIP-55 checksummed Ethereum address.")


class SignInputSerializer(serializers.Serializer):
    key_id = serializers.UUIDField()
    digest = serializers.CharField(min_length=64, max_length=64, help_text="Hex of exactly 32 bytes (a digest, never a message).")


class SignatureSerializer(serializers.Serializer):
    signature = serializers.CharField(help_text="r ‖ s, 64 bytes, low-S, hex.")
    recovery_id = serializers.IntegerField(min_value=0, max_value=1)
    der = serializers.CharField(help_text="The same signature DER-encoded, hex.")
