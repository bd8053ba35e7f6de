"""The audit app's public face: record an event, verify the chain.

Recording is cheap on hot paths: when the caller's transaction commits (`transaction.on_commit`),
the event goes to this process's write buffer (apps/audit/buffer.py), which a background thread
writes in batches every AUDIT_FLUSH_INTERVAL seconds; the request never waits for the audit
write. What a crash can lose is said there (at most one flush interval of events); an event is
never written for work that was rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from prometheus_client import Counter

from apps.audit.buffer import AuditBuffer
from apps.audit.hashing import GENESIS, id_hash, row_content, row_hash
from apps.audit.models import AuditChainHead, AuditEvent, EventType, Outcome
from homepocket.shutdown import on_shutdown

logger = logging.getLogger("homepocket.audit")

EVENTS_RECORDED = Counter("homepocket_audit_events_total", "Audit events written, by type.", ["event_type"])
WRITE_FAILURES = Counter("homepocket_audit_write_failures_total", "Audit writes that failed.")


def audit_event_record(
    *,
    event_type: str,
    outcome: str,
    actor_device_id=None,
    book_id=None,
    api_key_id=None,
    target: str = "",
    details: dict | None = None,
) -> None:
    """Record an event once the current transaction commits; ids are stored as keyed hashes only."""
    EventType(event_type)
    Outcome(outcome)
    event = AuditEvent(
        created_at=timezone.now(),
        event_type=event_type,
        outcome=outcome,
        actor_device=id_hash("device", actor_device_id),
        book=id_hash("book", book_id),
        api_key_id=str(api_key_id or ""),
        target=target,
        details=details or {},
    )
    transaction.on_commit(lambda: audit_buffer.add(event), robust=True)


def _append(events: list[AuditEvent]) -> None:
    try:
        with transaction.atomic():
            head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1, defaults={"last_hash": GENESIS})
            previous = head.last_hash
            for event in events:
                event.prev_hash = previous
                event.row_hash = previous = row_hash(previous, row_content(event))
            AuditEvent.objects.bulk_create(events)
            head.last_hash = previous
            head.save(update_fields=["last_hash"])
    except Exception:
        WRITE_FAILURES.inc()
        logger.exception("audit write failed", extra={"events": len(events)})
        raise
    for event in events:
        EVENTS_RECORDED.labels(event.event_type).inc()


audit_buffer = AuditBuffer(_append)
on_shutdown(audit_buffer.stop)


def audit_events_flush() -> int:
    """Write the buffered events now (tests, and commands that must see their own events)."""
    return audit_buffer.flush()


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def audit_chain_verify(*, since=None) -> tuple[int, ChainBreak | None]:
    """Walk the chain (from `since`, trusting the first row's prev_hash); (rows checked, first break)."""
    checked = 0
    # From the start, the oldest row must carry the anchor: old rows go only through retention.
    previous: str | None = None if since is not None else AuditChainHead.objects.get(pk=1).anchor_hash
    for event in _events(since):
        if previous is not None and event.prev_hash != previous:
            reason = "prev_hash does not match the previous row (a row was removed or reordered)"
            if checked == 0:
                reason = "the oldest row is not the retention anchor (old rows were removed outside retention)"
            return checked, ChainBreak(event.pk, reason)
        if row_hash(event.prev_hash, row_content(event)) != event.row_hash:
            return checked, ChainBreak(event.pk, "content does not match its hash (the row was edited)")
        previous = event.row_hash
        checked += 1
    return checked, None


def _events(since) -> Iterator[AuditEvent]:
    queryset = AuditEvent.objects.order_by("id")
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    return queryset.iterator(chunk_size=2000)


def audit_events_purge(*, older_than_days: int, dry_run: bool = False, batch_size: int = 1000, progress=None) -> int:
    """Delete events older than the retention, oldest first, in batches; move the chain anchor along."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    doomed = AuditEvent.objects.filter(created_at__lt=cutoff)
    total = doomed.count()
    if dry_run or total == 0:
        return total
    deleted = 0
    while True:
        with transaction.atomic():
            head = AuditChainHead.objects.select_for_update().get(pk=1)
            ids = list(doomed.order_by("id").values_list("id", flat=True)[:batch_size])
            if not ids:
                break
            AuditEvent.objects.filter(id__in=ids).delete()
            oldest = AuditEvent.objects.order_by("id").values_list("prev_hash", flat=True).first()
            head.anchor_hash = oldest if oldest is not None else head.last_hash
            head.save(update_fields=["anchor_hash"])
        deleted += len(ids)
        if progress:
            progress(deleted, total)
    return deleted
