"""Signature counts per key, kept in memory and flushed once a minute: never a write per signature.

Each flush writes, per key that signed, one `signing.usage` audit event with the count and one
UPDATE of the key's use_count and last_used_at. Counts of a worker that is killed before its
next flush are lost (at most SIGNING_USAGE_FLUSH_SECONDS of them); several workers each write
their own row for the same minute.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.models import EventType, Outcome
from apps.audit.services import audit_event_record
from apps.signing.models import SigningKey

log = logging.getLogger("homepocket.signing")

_counts: dict[UUID, list] = {}  # key id -> [api key id, count]
_flushers: weakref.WeakSet = weakref.WeakSet()


def usage_count(*, key_id: UUID, api_key_id: UUID) -> None:
    entry = _counts.get(key_id)
    if entry is None:
        _counts[key_id] = [api_key_id, 1]
        _flusher_ensure()
    else:
        entry[1] += 1


def _flusher_ensure() -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if loop not in _flushers:
        _flushers.add(loop)
        loop.create_task(_flush_forever())


async def _flush_forever() -> None:
    while True:
        await asyncio.sleep(settings.SIGNING_USAGE_FLUSH_SECONDS)
        try:
            await sync_to_async(signing_usage_flush, thread_sensitive=False)()
        except Exception:  # the database may be down: the counts of this round are dropped, logged
            log.exception("signing.usage_flush_failed")


def signing_usage_flush() -> int:
    """Write the counts gathered since the last flush; returns how many keys had any."""
    global _counts
    counts, _counts = _counts, {}
    if not counts:
        return 0
    now = timezone.now()
    minute = now.replace(second=0, microsecond=0).isoformat()
    with transaction.atomic():
        for key_id, (api_key_id, count) in counts.items():
            SigningKey.objects.filter(pk=key_id).update(use_count=F("use_count") + count, last_used_at=now)
            audit_event_record(
                event_type=EventType.SIGNING_USAGE, outcome=Outcome.SUCCESS, api_key_id=api_key_id,
                target=str(key_id), details={"count": count, "minute": minute},
            )  # fmt: skip
    return len(counts)
