"""Signature counts: kept in memory per worker, summed per key per minute in the database, audited once.

Never a write per signature. Each worker counts signatures per (minute, key) in memory and, just
after every minute boundary, adds them to `SigningUsage` rows with one atomic upsert per key-minute
(`count = count + n`: workers never read-then-write), and adds the totals to the key's use_count and
last_used_at. The periodic task `signing.usage_record` then turns each minute that closed more than
USAGE_GRACE ago into exactly one `signing.usage` audit event with the summed count (the row is
claimed by a conditional UPDATE, so two runs never record it twice).

Bounds: a worker killed between flushes loses at most one minute of its counts; a worker whose
flush arrives after the grace (stalled for over a minute) adds to a row already audited, so the
audit count is short by that flush (the row's and the key's use_count are still right).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone as dj_timezone

from apps.audit.models import EventType, Outcome
from apps.audit.services import audit_event_record
from apps.signing.models import SigningKey, SigningUsage

log = logging.getLogger("homepocket.signing")

USAGE_GRACE = timedelta(minutes=2)
USAGE_KEEP = timedelta(days=7)

_counts: dict[tuple[int, UUID], list] = {}  # (minute since epoch, key id) -> [api key id, count]
_flushers: weakref.WeakSet = weakref.WeakSet()


def usage_count(*, key_id: UUID, api_key_id: UUID) -> None:
    slot = (int(time.time()) // 60, key_id)
    entry = _counts.get(slot)
    if entry is None:
        _counts[slot] = [api_key_id, 1]
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
    interval = settings.SIGNING_USAGE_FLUSH_SECONDS
    while True:
        # Just after each boundary, so a closed minute reaches the database in one write per worker.
        await asyncio.sleep(interval - time.time() % interval + 1)
        try:
            await sync_to_async(signing_usage_flush, thread_sensitive=False)()
        except Exception:  # the database may be down: this round's counts are dropped, and logged
            log.exception("signing.usage_flush_failed")


_UPSERT = (
    "INSERT INTO {table} (key_id, api_key_id, minute, count, recorded) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (key_id, minute) DO UPDATE SET count = {table}.count + excluded.count"
)


def signing_usage_flush() -> int:
    """Add this worker's counts since its last flush to the per-minute rows; returns how many rows it touched."""
    global _counts
    counts, _counts = _counts, {}
    if not counts:
        return 0
    # A key deleted since it signed (an operator's cleanup) has nowhere to count.
    existing = set(SigningKey.objects.filter(pk__in={key_id for _, key_id in counts}).values_list("pk", flat=True))
    meta = SigningUsage._meta
    fields = {name: meta.get_field(name) for name in ("key", "api_key_id", "minute")}
    params = []
    totals: dict[UUID, int] = defaultdict(int)
    for (minute, key_id), (api_key_id, count) in counts.items():
        if key_id not in existing:
            continue
        minute_at = datetime.fromtimestamp(minute * 60, tz=timezone.utc)
        params.append((
            fields["key"].get_db_prep_value(key_id, connection),
            fields["api_key_id"].get_db_prep_value(api_key_id, connection),
            fields["minute"].get_db_prep_value(minute_at, connection),
            count,
            False,
        ))  # fmt: skip
        totals[key_id] += count
    if not params:
        return 0
    now = dj_timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(_UPSERT.format(table=connection.ops.quote_name(meta.db_table)), params)
        for key_id, total in totals.items():
            SigningKey.objects.filter(pk=key_id).update(use_count=F("use_count") + total, last_used_at=now)
    return len(params)


def signing_usage_record(*, now: datetime | None = None, batch_size: int = 5000) -> int:
    """One `signing.usage` audit event per key per closed minute; returns how many it recorded."""
    now = now or dj_timezone.now()
    recorded = 0
    rows = SigningUsage.objects.filter(recorded=False, minute__lt=now - USAGE_GRACE).order_by("minute")[:batch_size]
    for row in rows:
        with transaction.atomic():
            if not SigningUsage.objects.filter(pk=row.pk, recorded=False).update(recorded=True):
                continue  # another run claimed it
            audit_event_record(
                event_type=EventType.SIGNING_USAGE, outcome=Outcome.SUCCESS, api_key_id=row.api_key_id,
                target=str(row.key_id), details={"count": row.count, "minute": row.minute.isoformat()},
            )  # fmt: skip
            recorded += 1
    SigningUsage.objects.filter(recorded=True, minute__lt=now - USAGE_KEEP).delete()
    return recorded
