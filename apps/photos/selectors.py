"""The photos app's public reads: a book's available photos, their download URLs, per-book usage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db.models import Q

from apps.photos import storage
from apps.photos.models import BookPhotoUsage, Photo
from homepocket.api.errors import ApplicationError


class PhotoNotFound(ApplicationError):
    code = "PHOTO_NOT_FOUND"
    default_message = "No photo with this id."


@dataclass(frozen=True)
class PhotoDownload:
    photo: Photo
    download_url: str
    expires_in: int


def photo_get_available(*, book_id: uuid.UUID, photo_id: uuid.UUID) -> Photo:
    """An available photo of this book. Another book's photo is PHOTO_NOT_FOUND, like a missing
    one, so that a device learns nothing about ids outside its own book."""
    photo = Photo.objects.filter(pk=photo_id, book_id=book_id, state=Photo.State.AVAILABLE).first()
    if photo is None:
        raise PhotoNotFound()
    return photo


def photos_available(*, book_id: uuid.UUID, photo_ids: list[uuid.UUID]) -> list[Photo]:
    """The available photos of this book among `photo_ids`, in the order asked."""
    found = {p.pk: p for p in Photo.objects.filter(pk__in=photo_ids, book_id=book_id, state=Photo.State.AVAILABLE)}
    return [found[pid] for pid in dict.fromkeys(photo_ids) if pid in found]


def photo_download(*, photo: Photo, base_url: str) -> PhotoDownload:
    """A download URL for an available photo (presigning costs no round trip to the store)."""
    expires_in = settings.PHOTO_DOWNLOAD_URL_SECONDS
    url = storage.download_url(key=photo.s3_key, expires_in=expires_in, base_url=base_url)
    return PhotoDownload(photo=photo, download_url=url, expires_in=expires_in)


class InvalidCursor(ApplicationError):
    code = "INVALID_ARGUMENT"
    default_message = "The cursor is malformed."


def book_photos_page(*, book_id: uuid.UUID, cursor: str | None, limit: int) -> tuple[list[Photo], str | None]:
    """One page of a book's available photos, newest first, and the cursor of the next page."""
    query = Photo.objects.filter(book_id=book_id, state=Photo.State.AVAILABLE)
    if cursor:
        created_at, photo_id = _cursor_decode(cursor)
        # Keyset pagination on (created_at, id): stable under inserts, no OFFSET scans.
        query = query.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=photo_id))
    rows = list(query.order_by("-created_at", "-id")[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, _cursor_encode(rows[-1])


def book_photo_usage(*, book_id: uuid.UUID) -> tuple[int, int]:
    """(available photos, their bytes) of a book."""
    usage = BookPhotoUsage.objects.filter(book_id=book_id).first()
    return (usage.photo_count, usage.total_bytes) if usage else (0, 0)


def _cursor_encode(photo: Photo) -> str:
    micros = int(photo.created_at.timestamp()) * 1_000_000 + photo.created_at.microsecond
    return f"{micros}.{photo.pk.hex}"


def _cursor_decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        micros_text, id_hex = cursor.split(".")
        micros = int(micros_text)
        when = datetime.fromtimestamp(micros // 1_000_000, tz=dt_timezone.utc).replace(microsecond=micros % 1_000_000)
        return when, uuid.UUID(hex=id_hex)
    except (ValueError, OverflowError, OSError):
        raise InvalidCursor() from None
