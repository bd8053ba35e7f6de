"""Reads of the audit trail; raw ids in filters are hashed here, never stored or compared raw."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.audit.hashing import id_hash
from apps.audit.models import AuditEvent


def audit_events_filter(
    *, event_type=None, outcome=None, since=None, until=None, book_id=None, device_id=None, event_type_prefix=None
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if event_type_prefix:  # one app's trail (server backups: "backup.")
        events = events.filter(event_type__startswith=event_type_prefix)
    if event_type:
        events = events.filter(event_type=event_type)
    if outcome:
        events = events.filter(outcome=outcome)
    if since:
        events = events.filter(created_at__gte=since)
    if until:
        events = events.filter(created_at__lt=until)
    if book_id:
        events = events.filter(book=id_hash("book", book_id))
    if device_id:
        events = events.filter(actor_device=id_hash("device", device_id))
    return events
