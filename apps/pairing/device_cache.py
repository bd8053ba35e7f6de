"""Device records for token checks in two levels: this process's memory, then Redis, then the database.

Every authenticated request reads its device (public key, book, plan, revocation, tokens cut-off).
In the distributed mode that read is cached:

1. in this process for DEVICE_CACHE_SECONDS, but only while the node-wide broadcast listens
   (homepocket/redis_clients.py) and since the listener's last (re)connection: an entry is kept
   with the broadcast epoch it was loaded in, so an invalidation missed while the connection was
   down never leaves a stale entry behind;
2. in Redis for DEVICE_CACHE_REDIS_SECONDS under `<p>:device:<id>` (JSON), shared by the nodes.

A change (revocation, tokens bump, plan change) calls `devices_changed(ids)` after commit: Redis
gets a short tombstone instead of the entry (a fill uses SET NX, so a node that read the database
just before the commit cannot put the old record back while the tombstone lives), then the
broadcast tells every node to drop its copy. Measured in tests/e2e/test_cluster_revocation_e2e.py.

Fallback (LOCAL_ONLY): with Redis unreachable or the broadcast not listening, neither level is
trusted and each request reads the database, as before this cache. The embedded mode never caches:
its commands run in other processes, which could not tell this one's memory (DESIGN, "Two modes").
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from datetime import datetime

from django.conf import settings

from apps.pairing.models import Book, Device
from homepocket.redis_clients import broadcast, redis_configured, sync_client

logger = logging.getLogger("homepocket.pairing")

TOPIC = "devices.changed"
TOMBSTONE = b"-"
TOMBSTONE_MS = 10_000  # longer than any database read a concurrent fill may be in
STORE_RETRY_SECONDS = 1.0  # after a Redis error, skip the Redis level this long

_local: dict[str, tuple[float, int, Device]] = {}  # device id → (expires, broadcast epoch, record)
_changes = 0  # invalidations heard: a fill that saw one during its load does not keep its result
_lock = threading.Lock()
_redis_down_until = 0.0


def _key(device_id: str) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:device:{device_id}"


def _active() -> bool:
    if settings.DEVICE_CACHE_SECONDS <= 0 and settings.DEVICE_CACHE_REDIS_SECONDS <= 0:
        return False
    return redis_configured("device_keys") and broadcast.trusted()


def device_get(device_id: uuid.UUID) -> Device | None:
    """The device with its book (for the token check), from the nearest level that can be trusted."""
    key = str(device_id)
    if not _active():
        return _from_database(key)
    epoch, changes = broadcast.epoch, _changes
    hit = _local.get(key)
    if hit is not None and hit[0] > time.monotonic() and hit[1] == epoch:
        return hit[2]
    device = _from_redis(key)
    if device is None:
        device = _from_database(key)
        if device is not None:
            _to_redis(device)
    # Kept only if nothing changed while it loaded and the broadcast still listens since then.
    if device is not None and settings.DEVICE_CACHE_SECONDS > 0:
        with _lock:
            if changes == _changes and epoch == broadcast.epoch and broadcast.listening:
                if len(_local) >= 100_000:
                    _local.clear()
                _local[key] = (time.monotonic() + settings.DEVICE_CACHE_SECONDS, epoch, device)
    return device


def devices_changed(device_ids: list[str]) -> None:
    """After a commit that changed these devices: tombstone them in Redis, drop them on every node."""
    ids = [str(device_id) for device_id in device_ids]
    _forget({"ids": ids})  # this process at once, whatever happens to the broadcast
    if not redis_configured("device_keys"):
        return
    try:
        with sync_client("device_keys").pipeline(transaction=False) as pipe:
            for device_id in ids:
                pipe.set(_key(device_id), TOMBSTONE, px=TOMBSTONE_MS)
            pipe.execute()
    except Exception as exc:  # the listeners are down too then: no node trusts a cache now
        logger.warning("device cache not tombstoned", extra={"event": "device_cache_failed", "error": type(exc).__name__})
    broadcast.publish(TOPIC, {"ids": ids})


def _forget(data: dict) -> None:
    global _changes
    with _lock:
        _changes += 1
        for device_id in data.get("ids", []):
            _local.pop(str(device_id), None)


def local_forget() -> None:
    """Drop this process's copies (tests)."""
    global _changes
    with _lock:
        _changes += 1
        _local.clear()


broadcast.subscribe(TOPIC, _forget)


# --- the levels ---------------------------------------------------------------------------------


def _from_database(device_id: str) -> Device | None:
    return Device.objects.select_related("book").filter(pk=device_id).first()


def _store_usable() -> bool:
    return settings.DEVICE_CACHE_REDIS_SECONDS > 0 and time.monotonic() >= _redis_down_until


def _store_failed(exc: Exception) -> None:
    global _redis_down_until
    _redis_down_until = time.monotonic() + STORE_RETRY_SECONDS
    logger.warning("device cache store unreachable", extra={"event": "device_cache_failed", "error": type(exc).__name__})


def _from_redis(device_id: str) -> Device | None:
    if not _store_usable():
        return None
    try:
        raw = sync_client("device_keys").get(_key(device_id))
    except Exception as exc:
        _store_failed(exc)
        return None
    if raw is None or raw == TOMBSTONE:
        return None
    try:
        return _decode(raw)
    except (ValueError, KeyError, TypeError):
        return None


def _to_redis(device: Device) -> None:
    if not _store_usable():
        return
    try:
        sync_client("device_keys").set(_key(str(device.pk)), _encode(device), px=settings.DEVICE_CACHE_REDIS_SECONDS * 1000, nx=True)
    except Exception as exc:
        _store_failed(exc)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _encode(device: Device) -> str:
    return json.dumps({
        "book_id": str(device.book_id), "plan": device.book.plan, "public_key": base64.b64encode(bytes(device.public_key)).decode(),
        "name": device.name, "created_at": _time(device.created_at), "last_active_at": _time(device.last_active_at),
        "revoked_at": _time(device.revoked_at), "tokens_valid_after": _time(device.tokens_valid_after), "id": str(device.pk),
    })  # fmt: skip


def _decode(raw: bytes) -> Device:
    data = json.loads(raw)
    book = Book(id=uuid.UUID(data["book_id"]), plan=data["plan"])
    device = Device(
        id=uuid.UUID(data["id"]), book=book, public_key=base64.b64decode(data["public_key"]), name=data["name"],
        created_at=_parse(data["created_at"]), last_active_at=_parse(data["last_active_at"]),
        revoked_at=_parse(data["revoked_at"]), tokens_valid_after=_parse(data["tokens_valid_after"]),
    )  # fmt: skip
    for instance in (book, device):
        instance._state.adding, instance._state.db = False, "default"
    return device
