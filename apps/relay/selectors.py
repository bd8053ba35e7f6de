"""The relay's public reads: a book's sync status (counters only, never content)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from apps.pairing import selectors as pairing_selectors
from apps.relay import bus
from apps.relay.services import RelayUnavailable


@dataclass(frozen=True)
class DeviceSync:
    device_id: uuid.UUID
    online: bool
    last_seen_at: datetime | None


@dataclass(frozen=True)
class SyncStatus:
    book_id: uuid.UUID
    last_relay_at: datetime | None
    operation_count: int
    devices_online: list[uuid.UUID]
    devices: list[DeviceSync]


def book_sync_status(*, book_id: uuid.UUID, device_book_id: uuid.UUID) -> SyncStatus:
    """Last relay time, operations relayed, devices online now and each active device's last seen time."""
    book = pairing_selectors.book_get_for_device(book_id=book_id, device_book_id=device_book_id)
    try:
        counters = bus.book_counters_read(str(book.pk))
    except bus.BusUnavailable:
        raise RelayUnavailable() from None
    now = datetime.now(timezone.utc)
    devices = []
    for device in pairing_selectors.book_devices_active(book=book):
        online = str(device.pk) in counters.online_device_ids
        devices.append(DeviceSync(device_id=device.pk, online=online, last_seen_at=now if online else device.last_active_at))
    last_relay_at = datetime.fromtimestamp(counters.last_relay_ms / 1000, tz=timezone.utc) if counters.last_relay_ms else None
    return SyncStatus(
        book_id=book.pk,
        last_relay_at=last_relay_at,
        operation_count=counters.seq,
        devices_online=[d.device_id for d in devices if d.online],
        devices=devices,
    )
