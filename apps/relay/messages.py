"""The relay's wire protocol, defined once (CONVENTIONS 9): frames, their encode/decode, close codes.

Client → server: `crdt_operation` and `ping`. Server → client: `crdt_operation` as relayed (the
client's frame plus `device_id`, `relay_timestamp`, `seq`), `presence`, `pong`. Payloads are
opaque base64 text: checked to be base64 (so junk is refused at the edge), never decoded for
use, and placed into the relayed frame as the very same string, so the bytes a peer decodes are
the bytes the sender encoded.
"""

from __future__ import annotations

import binascii
import json
import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal


class CloseCode(IntEnum):
    """WebSocket close codes the relay uses; docs/relay.md says what a client does on each."""

    GOING_AWAY = 1001  # the node is shutting down: reconnect (to any node)
    UNSUPPORTED_DATA = 1003  # a binary frame: the protocol is JSON text
    MESSAGE_TOO_BIG = 1009  # a frame over RELAY_MAX_FRAME_BYTES (256 KiB)
    SERVICE_RESTART = 1012  # the node is draining (SIGTERM): reconnect now, through the proxy, to another node
    TRY_AGAIN_LATER = 1013  # Redis is unreachable: reconnect with backoff, then sync
    INVALID_FRAME = 4400  # not JSON, an unknown type, a missing or malformed field
    INVALID_TOKEN = 4401  # no, bad, expired token or ticket, unknown or revoked device
    FORBIDDEN = 4403  # the token's book is not the path's book
    SLOW_READER = 4408  # the socket's send buffer overflowed: reconnect, then sync
    RATE_LIMITED = 4429  # too many connects: reconnect after a while


# Refusal codes of the API error registry → the close code a socket is refused with.
CLOSE_CODE_FOR_ERROR = {
    "INVALID_TOKEN": CloseCode.INVALID_TOKEN,
    "FORBIDDEN": CloseCode.FORBIDDEN,
    "BOOK_NOT_FOUND": CloseCode.FORBIDDEN,  # a book the device is not in, existing or not
    "RATE_LIMIT_EXCEEDED": CloseCode.RATE_LIMITED,
    "RETRY_LATER": CloseCode.TRY_AGAIN_LATER,
}

SUBPROTOCOL = "homepocket.v1"
TICKET_SUBPROTOCOL_PREFIX = "ticket."


class FrameError(ValueError):
    """A client frame that is not one of ours; the message is safe to show (no payload in it)."""


@dataclass(frozen=True, slots=True)
class CrdtOperation:
    """Client → server: one encrypted CRDT update."""

    payload: str  # base64 of the ciphertext, forwarded as this very string
    timestamp: int | float  # the client's epoch, passed through


@dataclass(frozen=True, slots=True)
class RelayedOperation:
    """Server → the other devices of the book."""

    payload: str
    timestamp: int | float
    device_id: str  # the authenticated sender, never a value the client sent
    relay_timestamp: int  # server epoch, milliseconds
    seq: int  # per book, monotonically increasing


@dataclass(frozen=True, slots=True)
class Presence:
    device_id: str
    state: Literal["online", "offline"]


@dataclass(frozen=True, slots=True)
class ResyncRequired:
    """Server → a device reconnecting with ?since=<seq> that the backlog cannot bring up to date."""


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Pong:
    pass


ClientFrame = CrdtOperation | Ping
ServerFrame = RelayedOperation | Presence | Pong | ResyncRequired


def payload_check(payload: object) -> str:
    """The payload if it is non-empty base64 text; FrameError otherwise. Never decoded for use."""
    if not isinstance(payload, str) or not payload:
        raise FrameError("payload must be a non-empty base64 string")
    try:
        binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise FrameError("payload is not valid base64") from None
    return payload


def timestamp_check(value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FrameError("timestamp must be a number (the client's epoch)")
    return value


# --- client frames ------------------------------------------------------------------------------


def client_frame_decode(text: str) -> ClientFrame:
    """Parse a client's text frame; FrameError names what is wrong (never echoing the payload)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise FrameError("frame is not JSON") from None
    if not isinstance(data, dict):
        raise FrameError("frame must be a JSON object")
    kind = data.get("type")
    if kind == "crdt_operation":
        return CrdtOperation(payload=payload_check(data.get("payload")), timestamp=timestamp_check(data.get("timestamp")))
    if kind == "ping":
        return Ping()
    raise FrameError("type must be 'crdt_operation' or 'ping'")


def crdt_operation_encode(frame: CrdtOperation) -> str:
    return json.dumps({"type": "crdt_operation", "payload": frame.payload, "timestamp": frame.timestamp})


def ping_encode(frame: Ping | None = None) -> str:
    return '{"type":"ping"}'


# --- server frames ------------------------------------------------------------------------------


def relayed_operation_parts(*, operation: CrdtOperation, device_id: str, relay_timestamp: int) -> tuple[str, str]:
    """The relayed frame as (head, tail) around its seq: `head + str(seq) + tail` is the frame.

    The seq is taken in the same Redis script that publishes the frame (apps/relay/bus.py), so
    the frame is encoded once per operation, before its seq is known, and frames reach every
    node in seq order.
    """
    head = json.dumps(
        {
            "type": "crdt_operation",
            "payload": operation.payload,
            "timestamp": operation.timestamp,
            "device_id": device_id,
            "relay_timestamp": relay_timestamp,
        },
        separators=(",", ":"),
    )
    return head[:-1] + ',"seq":', "}"


def relayed_operation_encode(frame: RelayedOperation) -> str:
    head, tail = relayed_operation_parts(
        operation=CrdtOperation(payload=frame.payload, timestamp=frame.timestamp),
        device_id=frame.device_id,
        relay_timestamp=frame.relay_timestamp,
    )
    return f"{head}{frame.seq}{tail}"


def presence_encode(frame: Presence) -> str:
    return json.dumps({"type": "presence", "device_id": frame.device_id, "state": frame.state}, separators=(",", ":"))


def pong_encode(frame: Pong | None = None) -> str:
    return '{"type":"pong"}'


def resync_required_encode(frame: ResyncRequired | None = None) -> str:
    return '{"type":"resync_required"}'


RELAYED_OPERATION_PREFIX = '{"type":"crdt_operation",'


def relayed_operation_seq(text: str) -> int | None:
    """The seq of a frame this module encoded (it ends with `"seq":N}`); None for other frames."""
    if not text.startswith(RELAYED_OPERATION_PREFIX):
        return None
    return int(text[text.rindex(":") + 1 : -1])


def server_frame_decode(text: str) -> ServerFrame:
    """Parse a server frame (clients and tests use it); FrameError on anything else."""
    try:
        data = json.loads(text)
    except ValueError:
        raise FrameError("frame is not JSON") from None
    kind = data.get("type") if isinstance(data, dict) else None
    try:
        if kind == "crdt_operation":
            return RelayedOperation(
                payload=payload_check(data["payload"]),
                timestamp=timestamp_check(data["timestamp"]),
                device_id=str(data["device_id"]),
                relay_timestamp=int(data["relay_timestamp"]),
                seq=int(data["seq"]),
            )
        if kind == "presence" and data.get("state") in ("online", "offline"):
            return Presence(device_id=str(data["device_id"]), state=data["state"])
    except (KeyError, TypeError, ValueError):
        raise FrameError(f"malformed {kind} frame") from None
    if kind == "pong":
        return Pong()
    if kind == "resync_required":
        return ResyncRequired()
    raise FrameError("unknown server frame")
