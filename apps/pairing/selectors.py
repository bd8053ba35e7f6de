"""The pairing app's public reads."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from apps.pairing.models import Book, Device
from homepocket.api.errors import ApplicationError, Forbidden


class BookNotFound(ApplicationError):
    code = "BOOK_NOT_FOUND"
    default_message = "No book with this id."


class BookForbidden(Forbidden):
    default_message = "This token is not for this book."


def book_get(*, book_id: uuid.UUID) -> Book:
    """The book, or BOOK_NOT_FOUND (operators' views: no device to check it against)."""
    book = Book.objects.filter(pk=book_id).first()
    if book is None:
        raise BookNotFound()
    return book


def book_get_for_device(*, book_id: uuid.UUID, device_book_id: uuid.UUID) -> Book:
    """The path's book, refused unless it is the authenticated device's own book."""
    book = book_get(book_id=book_id)
    if book.pk != device_book_id:
        raise BookForbidden(details={"reason": "book_mismatch"})
    return book


def book_devices_active(*, book: Book) -> QuerySet[Device]:
    return Device.objects.filter(book=book, revoked_at__isnull=True).order_by("created_at")
