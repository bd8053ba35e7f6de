"""A device's Ed25519 identity key: the key the server verifies the device's tokens with.

The private half never leaves the device: the server learns only the 32 raw public key bytes,
sent as standard base64 (RFC 4648 section 4, with padding), which is the form the server's
`public_key` fields accept and return. All cryptography is the `cryptography` package's.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519_KEY_BYTES = 32


class DeviceKey:
    """An Ed25519 key pair; its repr shows only the public half so it can never leak into a log."""

    __slots__ = ("_private_key",)

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key

    @classmethod
    def generate(cls) -> DeviceKey:
        """A fresh key from the operating system's randomness."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> DeviceKey:
        """Load the 32-byte raw seed an app stored (in its keychain) from private_bytes()."""
        if len(raw) != ED25519_KEY_BYTES:
            raise ValueError(f"an Ed25519 private key is {ED25519_KEY_BYTES} raw bytes, got {len(raw)}")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """The 32-byte raw seed, for the app's secure storage; never send it anywhere."""
        return self._private_key.private_bytes(
            encoding=serialization.Encoding.Raw,
            format=serialization.PrivateFormat.Raw,
            encryption_algorithm=serialization.NoEncryption(),
        )

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The cryptography object, for signing with PyJWT or other protocol code."""
        return self._private_key

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._private_key.public_key()

    @property
    def public_key_bytes(self) -> bytes:
        """The 32 raw public key bytes: what the server stores and verifies tokens with."""
        return self.public_key.public_bytes(
            encoding=serialization.Encoding.Raw,
            format=serialization.PublicFormat.Raw,
        )

    @property
    def public_key_b64(self) -> str:
        """The public key as the server's wire form: standard base64 with padding (44 characters)."""
        return base64.b64encode(self.public_key_bytes).decode("ascii")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceKey):
            return NotImplemented
        return self.public_key_bytes == other.public_key_bytes

    def __hash__(self) -> int:
        return hash(self.public_key_bytes)

    def __repr__(self) -> str:
        return f"DeviceKey(public_key_b64={self.public_key_b64!r})"
