"""The signer's wire protocol, defined once: length-prefixed binary frames with request ids.

Every frame is `u32 length | u32 request_id | u8 kind | body`, big-endian, where `length` counts
the bytes after itself. Requests carry an op in `kind`, responses a status; the request id lets
many requests be in flight on one connection and their answers come back in any order.
docs/signer-protocol.md shows example bytes; tests/test_protocol round-trips every message.

Ops and their bodies:
- PING   (1): empty. Answer OK: `u8 rng_ok | u32 pid | u32 warm | u32 cool | u32 invalid` (the private
  keys in its cache by state; a 5-byte answer without the counts is still understood).
- CREATE (2): `key_id (16)`. Answer OK: `public_key (33) | blob wrapped_dek | blob wrapped_key | blob master_key_id`.
- SIGN   (3): `key_id (16) | digest (32) | blob wrapped_dek | blob wrapped_key`.
  Answer OK: `signature r‖s (64) | u8 recovery_id | der (rest)`.
A `blob` is `u16 length | bytes`. Any answer other than OK carries a short ASCII reason as body.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from uuid import UUID

HEADER = struct.Struct(">IIB")  # length, request id, op or status
LENGTH = struct.Struct(">I")
# The length counts request id + kind + body; a frame larger than this is a broken peer.
MAX_FRAME = 64 * 1024
DIGEST_BYTES = 32
PUBLIC_KEY_BYTES = 33


class Op(IntEnum):
    PING = 1
    CREATE = 2
    SIGN = 3


class Status(IntEnum):
    OK = 0
    UNLOCK_REQUIRED = 1  # the key is being unlocked; ask again shortly
    RETRY_LATER = 2  # overloaded or a dependency (KMS) is failing
    BAD_REQUEST = 3  # a malformed frame or field
    UNWRAP_FAILED = 4  # the wrapped material does not open (wrong key id, stale or damaged blob)
    INTERNAL = 5


class ProtocolError(ValueError):
    """A frame that cannot be decoded: the connection is closed."""


@dataclass(frozen=True)
class PingRequest:
    request_id: int


@dataclass(frozen=True)
class CreateRequest:
    request_id: int
    key_id: UUID


@dataclass(frozen=True)
class WrappedKey:
    """A private key as stored: AES-256-GCM under a data key, the data key wrapped by the master key."""

    wrapped_dek: bytes
    wrapped_key: bytes


@dataclass(frozen=True)
class SignRequest:
    request_id: int
    key_id: UUID
    digest: bytes
    material: WrappedKey


# The order of PING's key-cache counts (signer/keycache.py's states).
KEY_CACHE_STATES = ("warm", "cool", "invalid")


@dataclass(frozen=True)
class PingResult:
    request_id: int
    rng_ok: bool
    pid: int
    # Private keys held in the signer's cache, by state (signer/keycache.py): warm, cool, invalid.
    key_cache: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class CreateResult:
    request_id: int
    public_key: bytes
    material: WrappedKey
    master_key_id: str


@dataclass(frozen=True)
class SignResult:
    request_id: int
    signature: bytes
    recovery_id: int
    der: bytes


@dataclass(frozen=True)
class ErrorResult:
    request_id: int
    status: Status
    reason: str = ""


Request = PingRequest | CreateRequest | SignRequest
Response = PingResult | CreateResult | SignResult | ErrorResult


def _frame(request_id: int, kind: int, body: bytes) -> bytes:
    return HEADER.pack(5 + len(body), request_id, kind) + body


def _blob(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ProtocolError("blob too long")
    return struct.pack(">H", len(data)) + data


def _blobs(body: bytes, offset: int, count: int) -> tuple[list[bytes], int]:
    out = []
    for _ in range(count):
        if offset + 2 > len(body):
            raise ProtocolError("truncated blob length")
        (size,) = struct.unpack_from(">H", body, offset)
        offset += 2
        if offset + size > len(body):
            raise ProtocolError("truncated blob")
        out.append(body[offset : offset + size])
        offset += size
    return out, offset


def encode_request(request: Request) -> bytes:
    if isinstance(request, SignRequest):
        if len(request.digest) != DIGEST_BYTES:
            raise ProtocolError("digest must be 32 bytes")
        body = request.key_id.bytes + request.digest + _blob(request.material.wrapped_dek) + _blob(request.material.wrapped_key)
        return _frame(request.request_id, Op.SIGN, body)
    if isinstance(request, CreateRequest):
        return _frame(request.request_id, Op.CREATE, request.key_id.bytes)
    if isinstance(request, PingRequest):
        return _frame(request.request_id, Op.PING, b"")
    raise TypeError(f"not a request: {request!r}")


def decode_request(request_id: int, op: int, body: bytes) -> Request:
    if op == Op.SIGN:
        if len(body) < 16 + DIGEST_BYTES:
            raise ProtocolError("short sign request")
        (dek, key), end = _blobs(body, 48, 2)
        if end != len(body):
            raise ProtocolError("trailing bytes")
        return SignRequest(request_id, UUID(bytes=body[:16]), body[16:48], WrappedKey(dek, key))
    if op == Op.CREATE:
        if len(body) != 16:
            raise ProtocolError("create request takes a 16-byte key id")
        return CreateRequest(request_id, UUID(bytes=body))
    if op == Op.PING:
        return PingRequest(request_id)
    raise ProtocolError(f"unknown op {op}")


def encode_response(response: Response) -> bytes:
    if isinstance(response, SignResult):
        body = response.signature + bytes([response.recovery_id]) + response.der
        return _frame(response.request_id, Status.OK, body)
    if isinstance(response, CreateResult):
        m = response.material
        body = response.public_key + _blob(m.wrapped_dek) + _blob(m.wrapped_key) + _blob(response.master_key_id.encode())
        return _frame(response.request_id, Status.OK, body)
    if isinstance(response, PingResult):
        body = struct.pack(">BI", int(response.rng_ok), response.pid)
        if response.key_cache is not None:
            body += struct.pack(">III", *response.key_cache)
        return _frame(response.request_id, Status.OK, body)
    if isinstance(response, ErrorResult):
        return _frame(response.request_id, response.status, response.reason.encode("ascii", "replace")[:200])
    raise TypeError(f"not a response: {response!r}")


def decode_response(request_id: int, status: int, body: bytes, op: Op) -> Response:
    """A response's body depends on the op it answers, which the caller knows by request id."""
    if status != Status.OK:
        try:
            return ErrorResult(request_id, Status(status), body.decode("ascii", "replace"))
        except ValueError:
            raise ProtocolError(f"unknown status {status}") from None
    if op == Op.SIGN:
        if len(body) < 65:
            raise ProtocolError("short signature")
        return SignResult(request_id, body[:64], body[64], body[65:])
    if op == Op.CREATE:
        if len(body) < PUBLIC_KEY_BYTES:
            raise ProtocolError("short create result")
        (dek, key, master), end = _blobs(body, PUBLIC_KEY_BYTES, 3)
        if end != len(body):
            raise ProtocolError("trailing bytes")
        return CreateResult(request_id, body[:PUBLIC_KEY_BYTES], WrappedKey(dek, key), master.decode())
    if op == Op.PING:
        if len(body) not in (5, 17):
            raise ProtocolError("bad ping result")
        rng_ok, pid = struct.unpack(">BI", body[:5])
        key_cache = struct.unpack(">III", body[5:]) if len(body) == 17 else None
        return PingResult(request_id, bool(rng_ok), pid, key_cache)
    raise ProtocolError(f"unknown op {op}")


class FrameReader:
    """Splits a byte stream into (request_id, kind, body) frames; feed it what the socket gives."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        self._buffer += data
        frames = []
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= 4:
            (length,) = LENGTH.unpack_from(buffer, offset)
            if length < 5 or length > MAX_FRAME:
                raise ProtocolError(f"bad frame length {length}")
            if len(buffer) - offset - 4 < length:
                break
            _, request_id, kind = HEADER.unpack_from(buffer, offset)
            frames.append((request_id, kind, bytes(buffer[offset + 9 : offset + 4 + length])))
            offset += 4 + length
        if offset:
            del buffer[:offset]
        return frames
