"""Share delivery's public reads: status for the devices of the book, lists for operators."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from apps.backups.delivery.models import ShareDelivery, ShareDeliveryTransition
from apps.backups.delivery.services import DeliveryNotFound


def share_delivery_get_for_book(*, delivery_id: uuid.UUID, book_id: uuid.UUID) -> ShareDelivery:
    """A delivery of the caller's book (its recipient or any other device of the book may watch it)."""
    delivery = ShareDelivery.objects.filter(pk=delivery_id, book_id=book_id).first()
    if delivery is None:
        raise DeliveryNotFound()  # another book's delivery is as unknown as a missing one
    return delivery


def share_delivery_get(*, delivery_id: uuid.UUID) -> ShareDelivery:
    delivery = ShareDelivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        raise DeliveryNotFound()
    return delivery


def share_deliveries_list(*, status: str | None = None, limit: int = 100) -> QuerySet[ShareDelivery]:
    rows = ShareDelivery.objects.order_by("-created_at")
    if status:
        rows = rows.filter(status=status)
    return rows[:limit]


def share_delivery_history(*, delivery_id: uuid.UUID) -> QuerySet[ShareDeliveryTransition]:
    return ShareDeliveryTransition.objects.filter(delivery_id=delivery_id).order_by("id")
