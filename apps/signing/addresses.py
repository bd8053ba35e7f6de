"""Ethereum addresses of secp256k1 public keys, EIP-55 mixed-case checksummed."""

from __future__ import annotations

from coincurve import PublicKey
from Crypto.Hash import keccak


def _keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def eip55_address(public_key: bytes) -> str:
    """The address of a (compressed or uncompressed) public key: keccak-256 of the 64-byte point, last 20 bytes."""
    point = PublicKey(public_key).format(compressed=False)[1:]
    hex_address = _keccak256(point)[-20:].hex()
    checksum = _keccak256(hex_address.encode()).hex()
    return "0x" + "".join(c.upper() if c.isalpha() and int(checksum[i], 16) >= 8 else c for i, c in enumerate(hex_address))
