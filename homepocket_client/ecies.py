"""ECIES on secp256k1, version 1: the wire format of a delivered backup share (docs/ecies.md).

    0x01 ‖ ephemeral public key (33, compressed) ‖ nonce (12) ‖ AES-256-GCM ciphertext+tag ‖ HMAC-SHA256 (32)

- shared secret: libsecp256k1's ECDH through coincurve, i.e. SHA-256(compressed shared point);
- keys: HKDF-SHA256(secret, salt = ephemeral public key, info = "homepocket/ecies/v1", 64 bytes)
  → AES-256 key ‖ HMAC-SHA256 key;
- AES-256-GCM with the caller's associated data (the delivery id's 16 bytes);
- HMAC-SHA256 over every byte before it.

The GCM tag already authenticates; the outer HMAC is the issue's requirement and lets a
receiver refuse a damaged message before it touches the cipher. Every primitive is coincurve's
or cryptography's: this module only composes them. It is the one implementation: the server
encrypts with it and the client library decrypts with it, so the two cannot drift.
"""

from __future__ import annotations

import os

from coincurve import PrivateKey, PublicKey
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 0x01
INFO = b"homepocket/ecies/v1"
PUBLIC_KEY_BYTES = 33
NONCE_BYTES = 12
TAG_BYTES = 16
MAC_BYTES = 32
OVERHEAD = 1 + PUBLIC_KEY_BYTES + NONCE_BYTES + TAG_BYTES + MAC_BYTES


class EciesError(ValueError):
    """A message that does not open: malformed, wrong key, wrong associated data or tampered."""


def _keys(secret: bytes, ephemeral_public: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=ephemeral_public, info=INFO).derive(secret)
    return okm[:32], okm[32:]


def _mac(key: bytes, data: bytes) -> hmac.HMAC:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac


def ecies_encrypt(
    recipient_public_key: bytes,
    plaintext: bytes,
    *,
    aad: bytes,
    ephemeral_key: PrivateKey | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """Encrypt to a compressed secp256k1 public key. `ephemeral_key`/`nonce` are for test vectors only."""
    recipient = PublicKey(recipient_public_key)  # raises ValueError when it is not a curve point
    ephemeral = ephemeral_key or PrivateKey()
    ephemeral_public = ephemeral.public_key.format(compressed=True)
    nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
    aes_key, mac_key = _keys(ephemeral.ecdh(recipient.format()), ephemeral_public)
    body = bytes([VERSION]) + ephemeral_public + nonce + AESGCM(aes_key).encrypt(nonce, plaintext, aad)
    return body + _mac(mac_key, body).finalize()


def ecies_decrypt(private_key: PrivateKey, message: bytes, *, aad: bytes) -> bytes:
    """Open a message made by ecies_encrypt for this key; EciesError for anything that does not verify."""
    if len(message) < OVERHEAD or message[0] != VERSION:
        raise EciesError("not an ECIES v1 message")
    body, tag = message[:-MAC_BYTES], message[-MAC_BYTES:]
    ephemeral_public = body[1 : 1 + PUBLIC_KEY_BYTES]
    nonce = body[1 + PUBLIC_KEY_BYTES : 1 + PUBLIC_KEY_BYTES + NONCE_BYTES]
    try:
        secret = private_key.ecdh(ephemeral_public)
    except ValueError:
        raise EciesError("the ephemeral public key is not a curve point") from None
    aes_key, mac_key = _keys(secret, ephemeral_public)
    try:
        _mac(mac_key, body).verify(tag)  # constant-time comparison, by cryptography
    except InvalidSignature:
        raise EciesError("HMAC mismatch: the message was altered or is not for this key") from None
    try:
        return AESGCM(aes_key).decrypt(nonce, body[1 + PUBLIC_KEY_BYTES + NONCE_BYTES :], aad)
    except InvalidTag:
        raise EciesError("AES-GCM tag mismatch: wrong associated data or altered ciphertext") from None
