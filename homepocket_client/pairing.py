"""Pairing: results of the pairing API as typed values, and the short authentication string.

Device A (already in a book) asks the server for a six-digit code and shows it; the user types it
into device B, which sends it with its new key; the server then hands each device the other's
public key. The server relays both keys, so a malicious server could hand each side a key of its
own instead. pairing_sas() is what both phones compute locally from the keys they actually got
and show the user to compare: if the server swapped a key, the two screens differ.

Limit of this SAS (version 1): neither key is committed to before the other side's is revealed,
and the server answers B (verify) before A (exchange). A server that deliberately searches for a
substitute key can make the 6 digits match in about a million key generations (under a minute on
one core). The SAS catches a server that swaps keys without that search, not one that does it;
closing that gap needs a commitment to a key before the other is revealed (a protocol change).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from homepocket_client.books import documented_shape
from homepocket_client.envelope import Envelope
from homepocket_client.keys import ED25519_KEY_BYTES

SHORT_CODE_DIGITS = 6
# The server's cap on the exchange long poll; more would only be refused as INVALID_ARGUMENT.
EXCHANGE_MAX_WAIT_SECONDS = 30
EXCHANGE_WAITING = "waiting"
EXCHANGE_COMPLETED = "completed"
SAS_DOMAIN = b"homepocket-pairing-sas-v1\x00"
SAS_DIGITS = 6


@dataclass(frozen=True)
class PairingCode:
    """What device A shows the user: the code and when it stops working (the server's clock)."""

    short_code: str
    expires_at: datetime
    ttl_seconds: int


@dataclass(frozen=True)
class PairingMatch:
    """Device B's side of a successful verify: B now belongs to `book_id`; A is the peer."""

    book_id: uuid.UUID
    device_id: uuid.UUID
    peer_device_id: uuid.UUID
    peer_public_key: bytes


@dataclass(frozen=True)
class PairingExchange:
    """Device A's view of the pairing: still waiting for B, or completed with B's key (sent once)."""

    status: str
    peer_device_id: uuid.UUID | None
    peer_public_key: bytes | None

    @property
    def completed(self) -> bool:
        return self.status == EXCHANGE_COMPLETED


@dataclass(frozen=True)
class DeviceRevoked:
    device_id: uuid.UUID
    revoked_at: datetime


def short_code_check(short_code: str) -> str:
    """Return `short_code` if it is exactly six ASCII digits, else raise ValueError.

    ASCII only: str.isdigit() also accepts other scripts' digits ("٠٤٢٩١٧"), which would hash
    differently in the SAS and which the server would refuse anyway. Checking before sending
    keeps a typo from costing one of the server's rate-limited attempts.
    """
    if not (
        isinstance(short_code, str)
        and len(short_code) == SHORT_CODE_DIGITS
        and short_code.isascii()
        and short_code.isdigit()
    ):
        raise ValueError(f"a pairing code is {SHORT_CODE_DIGITS} ASCII digits as a string, got {short_code!r}")
    return short_code


def exchange_wait_check(wait: int) -> int:
    """Return `wait` if it is whole seconds the server accepts (0..30), else raise ValueError."""
    if isinstance(wait, bool) or not isinstance(wait, int) or not 0 <= wait <= EXCHANGE_MAX_WAIT_SECONDS:
        raise ValueError(f"wait is whole seconds from 0 to {EXCHANGE_MAX_WAIT_SECONDS}, got {wait!r}")
    return wait


def pairing_sas(short_code: str, initiator_public_key: bytes, joiner_public_key: bytes) -> str:
    """The six-digit short authentication string both devices show the user to compare.

    `initiator_public_key` is device A's (it generated the code), `joiner_public_key` device B's;
    both raw 32-byte Ed25519 keys, each device using its own key and the key the server gave it
    for the other. Definition (v1), which every client must follow byte for byte:

        digest = SHA-256(b"homepocket-pairing-sas-v1\\x00" + short_code (ASCII) + b"\\x00"
                         + initiator_public_key + joiner_public_key)
        sas = f"{int.from_bytes(digest[:4], 'big') % 1_000_000:06d}"

    The roles fix the order of the keys, so A and B hash the same bytes. See the module docstring
    for what this comparison does and does not prove.
    """
    code = short_code_check(short_code)
    initiator = _raw_key_check(initiator_public_key, "initiator_public_key")
    joiner = _raw_key_check(joiner_public_key, "joiner_public_key")
    digest = hashlib.sha256(SAS_DOMAIN + code.encode("ascii") + b"\x00" + initiator + joiner).digest()
    return f"{int.from_bytes(digest[:4], 'big') % 10**SAS_DIGITS:0{SAS_DIGITS}d}"


def pairing_code_parse(envelope: Envelope) -> PairingCode:
    """Parse the answer of POST /api/v1/pairing/generate."""
    with documented_shape("pairing code", envelope):
        data = envelope.data
        return PairingCode(
            short_code=short_code_check(data["short_code"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
            ttl_seconds=_int(data["ttl_seconds"]),
        )


def pairing_match_parse(envelope: Envelope) -> PairingMatch:
    """Parse the answer of POST /api/v1/pairing/verify; anything but `matched: true` is a protocol break."""
    with documented_shape("pairing verification", envelope):
        data = envelope.data
        if data["matched"] is not True:
            # Refusals come as error envelopes; a success that says "not matched" is not the contract.
            raise ValueError("matched is not true")
        return PairingMatch(
            book_id=uuid.UUID(data["book_id"]),
            device_id=uuid.UUID(data["device_id"]),
            peer_device_id=uuid.UUID(data["peer_device_id"]),
            peer_public_key=_public_key_parse(data["peer_public_key"]),
        )


def pairing_exchange_parse(envelope: Envelope) -> PairingExchange:
    """Parse the answer of POST /api/v1/pairing/exchange: `waiting`, or `completed` with B's key."""
    with documented_shape("pairing exchange", envelope):
        data = envelope.data
        status = data["status"]
        if status == EXCHANGE_WAITING:
            return PairingExchange(status=status, peer_device_id=None, peer_public_key=None)
        if status == EXCHANGE_COMPLETED:
            return PairingExchange(
                status=status,
                peer_device_id=uuid.UUID(data["peer_device_id"]),
                peer_public_key=_public_key_parse(data["peer_public_key"]),
            )
        raise ValueError("unknown exchange status")


def device_revoked_parse(envelope: Envelope) -> DeviceRevoked:
    """Parse the answer of DELETE /api/v1/books/{book_id}/devices/{device_id}."""
    with documented_shape("device revocation", envelope):
        data = envelope.data
        return DeviceRevoked(
            device_id=uuid.UUID(data["device_id"]),
            revoked_at=datetime.fromisoformat(data["revoked_at"]),
        )


def _raw_key_check(key: bytes, name: str) -> bytes:
    if not isinstance(key, bytes) or len(key) != ED25519_KEY_BYTES:
        shown = f"{len(key)} bytes" if isinstance(key, bytes) else type(key).__name__
        raise ValueError(f"{name} must be the raw {ED25519_KEY_BYTES}-byte public key, got {shown}")
    return key


def _public_key_parse(text: Any) -> bytes:
    # A key of the wrong length would fail later, in the SAS or in encryption to it; fail at the wire.
    return _raw_key_check(base64.b64decode(text, validate=True), "peer_public_key")


def _int(value: Any) -> int:
    # int("300") or int(300.7) would hide a changed wire type; bool is an int subclass.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not an integer")
    return value
