"""The pairing app's public writes: books and devices."""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.pairing.models import Book, Device
from homepocket.api.errors import ApplicationError


class DeviceAlreadyRegistered(ApplicationError):
    code = "DEVICE_ALREADY_REGISTERED"
    default_message = "This device id or public key is already registered."


def book_create(*, device_id: uuid.UUID, public_key: bytes, device_name: str) -> tuple[Book, Device, bool]:
    """Create a book with its first device; a retry by the same device returns the same book.

    Returns (book, device, created). A network retry of the very same registration (same device
    id and key, device still active) is answered with the existing book instead of a conflict,
    so a phone that lost the first answer still learns its book id.
    """
    try:
        with transaction.atomic():
            book = Book.objects.create()
            device = Device.objects.create(id=device_id, book=book, public_key=public_key, name=device_name)
        return book, device, True
    except IntegrityError:
        # The id or the key is taken: the unique constraints decided, not a read before the write.
        pass
    existing = Device.objects.select_related("book").filter(pk=device_id).first()
    if existing is not None and bytes(existing.public_key) == public_key and not existing.is_revoked:
        return existing.book, existing, False
    raise DeviceAlreadyRegistered()


def devices_revoke(*, device_ids: list[uuid.UUID]) -> int:
    """Revoke devices: their tokens are refused from now on. Returns how many were active."""
    return Device.objects.filter(pk__in=device_ids, revoked_at__isnull=True).update(revoked_at=timezone.now())
