"""The server's signature over a delivered share: what is signed, and how a client checks it.

    digest = SHA-256(delivery_id (16) ‖ recipient device id (16) ‖ backup_id (16)
                     ‖ timestamp (8, big-endian Unix seconds) ‖ SHA-256(encrypted_share) (32))

signed with the server's secp256k1 key (ECDSA, low-S), sent as the 64-byte compact r ‖ s in hex.
Ids are the raw 16 bytes of the UUIDs. The server signs with this module's digest and the client
verifies with it, so the two cannot disagree about the layout (docs/share-delivery.md).
"""

from __future__ import annotations

import hashlib
import uuid

from coincurve import PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact

SIGNATURE_BYTES = 64


def delivery_digest(
    *, delivery_id: uuid.UUID, recipient_device_id: uuid.UUID, backup_id: uuid.UUID, timestamp: int, encrypted_share: bytes
) -> bytes:
    """The 32 bytes the server signs for one answer."""
    message = (
        delivery_id.bytes
        + recipient_device_id.bytes
        + backup_id.bytes
        + int(timestamp).to_bytes(8, "big")
        + hashlib.sha256(encrypted_share).digest()
    )
    return hashlib.sha256(message).digest()


def delivery_signature_valid(public_key: bytes, signature: bytes, digest: bytes) -> bool:
    """True when `signature` (compact r ‖ s) is the holder of `public_key`'s over `digest`."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        der = cdata_to_der(deserialize_compact(signature))
        return PublicKey(public_key).verify(der, digest, hasher=None)
    except ValueError:
        return False
