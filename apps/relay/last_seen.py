"""Closed sockets' "last seen" writes, batched: one UPDATE for the closes of a moment, not one each.

A socket's close records its device as seen (sync_status' `last_seen_at`). Written one socket at a
time, each write waits its turn on Django's one sync thread: a node that drains closes all its
sockets at once, and 10,000 single writes outlasted the 20 s graceful timeout (measured under
uvicorn, bench/relay.py idle run), after which the server cancels them all. Here the device ids
of the closes of BATCH_SECONDS go to the database in one conditional UPDATE
(services.relay_devices_seen), in chunks.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from channels.db import database_sync_to_async

from apps.relay import services

logger = logging.getLogger("homepocket.relay")

BATCH_SECONDS = 0.2


class LastSeenBatch:
    """The devices of this event loop's closed sockets, waiting for their one write."""

    def __init__(self) -> None:
        self._devices: set[str] = set()
        self._writing: asyncio.Task | None = None

    def add(self, device_id: str) -> None:
        self._devices.add(device_id)
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write(), name="relay-last-seen")

    async def _write(self) -> None:
        await asyncio.sleep(BATCH_SECONDS)
        devices, self._devices = self._devices, set()
        self._writing = None
        try:
            await database_sync_to_async(services.relay_devices_seen)(device_ids=sorted(devices))
        except Exception as exc:  # the database is down: last seen stays at connect time
            logger.warning("relay last-seen update failed", extra={"event": "relay_touch_failed", "error": type(exc).__name__})


_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LastSeenBatch] = weakref.WeakKeyDictionary()


def last_seen_add(device_id: str) -> None:
    """Record, soon and together with the other closes, that `device_id`'s socket closed now."""
    loop = asyncio.get_running_loop()
    batch = _batches.get(loop)
    if batch is None:
        batch = _batches[loop] = LastSeenBatch()
    batch.add(device_id)
