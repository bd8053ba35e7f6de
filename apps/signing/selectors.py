"""Reads of the sign path, cached in this process's memory: a key's owner and wrapped material.

Wrapped material is not secret without the master key, so caching it here is safe; it saves a
database read per signature. A cached record lives SIGNING_KEY_CACHE_SECONDS; a record whose
material the signer cannot open (re-wrapped by a master-key rotation since) is re-read at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings

from apps.signing.models import SigningKey
from signer.protocol import WrappedKey

MAX_CACHED = 100_000


@dataclass(frozen=True)
class KeyRecord:
    key_id: UUID
    api_key_id: UUID
    material: WrappedKey


_records: dict[UUID, tuple[float, KeyRecord]] = {}


def signing_key_record_get(*, key_id: UUID) -> KeyRecord | None:
    row = SigningKey.objects.filter(pk=key_id).values_list("api_key_id", "wrapped_dek", "wrapped_key").first()
    if row is None:
        return None
    return KeyRecord(key_id, row[0], WrappedKey(bytes(row[1]), bytes(row[2])))


async def signing_key_record_cached(*, key_id: UUID, fresh: bool = False) -> KeyRecord | None:
    now = time.monotonic()
    hit = None if fresh else _records.get(key_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    record = await sync_to_async(signing_key_record_get, thread_sensitive=False)(key_id=key_id)
    if record is not None:
        if len(_records) >= MAX_CACHED:
            _records.clear()
        _records[key_id] = (now + settings.SIGNING_KEY_CACHE_SECONDS, record)
    return record


def signing_key_records_forget() -> None:
    _records.clear()
