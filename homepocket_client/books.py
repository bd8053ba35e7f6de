"""Results of the books API as typed values, parsed from the success envelope.

Ids become uuid.UUID and public keys raw bytes, the forms the rest of the library (tokens, and
later ECIES to a device's key) works with; base64 and id strings stay on the wire.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from homepocket_client.envelope import Envelope
from homepocket_client.errors import TransportError


@dataclass(frozen=True)
class BookCreated:
    """`created` is False when the server recognised a retry of the same registration (HTTP 200)."""

    book_id: uuid.UUID
    device_id: uuid.UUID
    created: bool


@dataclass(frozen=True)
class DeviceInfo:
    """One active device of a book; `is_current` marks the device whose token asked."""

    device_id: uuid.UUID
    public_key: bytes
    device_name: str
    last_active_at: datetime | None
    is_current: bool

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode("ascii")


@dataclass(frozen=True)
class DeviceList:
    devices: list[DeviceInfo]
    total_count: int


def book_created_parse(envelope: Envelope) -> BookCreated:
    """Parse the answer of POST /api/v1/books; 201 means a new book, 200 an idempotent retry."""
    with documented_shape("book creation", envelope):
        data = envelope.data
        return BookCreated(
            book_id=uuid.UUID(data["book_id"]),
            device_id=uuid.UUID(data["device_id"]),
            created=envelope.status == 201,
        )


def device_list_parse(envelope: Envelope) -> DeviceList:
    """Parse the answer of GET /api/v1/books/{book_id}/devices."""
    with documented_shape("device list", envelope):
        data = envelope.data
        devices = [_device_parse(item) for item in data["devices"]]
        return DeviceList(devices=devices, total_count=int(data["total_count"]))


def _device_parse(item: dict[str, Any]) -> DeviceInfo:
    last_active_at = item["last_active_at"]
    return DeviceInfo(
        device_id=uuid.UUID(item["device_id"]),
        public_key=base64.b64decode(item["public_key"], validate=True),
        device_name=str(item["device_name"]),
        last_active_at=None if last_active_at is None else datetime.fromisoformat(last_active_at),
        is_current=bool(item["is_current"]),
    )


@contextmanager
def documented_shape(what: str, envelope: Envelope) -> Iterator[None]:
    # A success envelope whose data lacks documented fields is a protocol break, like a
    # non-envelope answer: the app gets TransportError, never a bare KeyError.
    try:
        yield
    except (KeyError, TypeError, ValueError) as exc:
        raise TransportError(
            f"the {what} data does not have the documented shape",
            status=envelope.status,
            request_id=envelope.request_id,
        ) from exc
