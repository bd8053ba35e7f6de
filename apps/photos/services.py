"""The photos app's public writes: issue an upload URL, confirm the upload, delete, clean up.

The server never sees a photo's bytes: a device uploads ciphertext straight to the store through
a URL we sign, and `photo_upload_complete` checks the stored object's size before the photo
becomes available. Store calls are never made inside a long database transaction except the
delete, which must not drop the row unless the object went first.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.hashing import id_hash
from apps.audit.models import EventType, Outcome
from apps.audit.services import audit_event_record
from apps.pairing.selectors import book_get_for_device
from apps.photos import metrics, storage
from apps.photos.models import BookPhotoUsage, Photo
from apps.photos.selectors import PhotoNotFound
from homepocket.api.errors import ApplicationError

logger = logging.getLogger("homepocket.photos")

# The object is ciphertext whatever the photo was: the store is told nothing about its type.
OBJECT_CONTENT_TYPE = "application/octet-stream"


class PhotoTooLarge(ApplicationError):
    code = "PHOTO_TOO_LARGE"
    default_message = "The photo is larger than the 10 MiB cap."


class PhotoSizeMismatch(ApplicationError):
    code = "INVALID_ARGUMENT"
    default_message = "The uploaded object is smaller than the declared size; it was deleted."


class UploadMissing(ApplicationError):
    code = "INVALID_STATE"
    default_message = "Nothing was uploaded for this photo yet."


def now() -> datetime:
    """The clock of expiry decisions (patched by tests)."""
    return timezone.now()


@dataclass(frozen=True)
class UploadStarted:
    photo: Photo
    target: storage.UploadTarget
    expires_in: int


def photo_upload_start(
    *, device_id: uuid.UUID, device_book_id: uuid.UUID, book_id: uuid.UUID, transaction_id: str,
    size_bytes: int, mime_type: str, sha256: str, base_url: str,
) -> UploadStarted:  # fmt: skip
    """Record a pending photo and issue the URL its ciphertext is uploaded to (size signed in)."""
    book_get_for_device(book_id=book_id, device_book_id=device_book_id)
    if size_bytes > settings.PHOTO_MAX_BYTES:
        raise PhotoTooLarge(details={"max_bytes": settings.PHOTO_MAX_BYTES, "size_bytes": size_bytes})
    photo = Photo.objects.create(
        book_id=book_id, transaction_id=transaction_id, uploaded_by=device_id, size_bytes=size_bytes,
        mime_type=mime_type, sha256=sha256,
    )  # fmt: skip
    expires_in = settings.PHOTO_UPLOAD_URL_SECONDS
    # The row is committed before the URL exists, so any object in the store has (had) a row.
    target = storage.upload_target(
        key=photo.s3_key, size_bytes=size_bytes, mime_type=OBJECT_CONTENT_TYPE, expires_in=expires_in, base_url=base_url
    )
    return UploadStarted(photo=photo, target=target, expires_in=expires_in)


def photo_upload_complete(*, device_id: uuid.UUID, book_id: uuid.UUID, photo_id: uuid.UUID) -> Photo:
    """Check the stored object's size against the declared one and make the photo available.

    Completing twice answers the same photo. A size that differs deletes the object and the
    row (the device starts again): larger is PHOTO_TOO_LARGE, smaller INVALID_ARGUMENT.
    """
    photo = Photo.objects.filter(pk=photo_id, book_id=book_id).first()
    if photo is None:
        raise PhotoNotFound()
    if photo.state == Photo.State.AVAILABLE:
        return photo
    key = photo.s3_key
    stored = storage.object_size(key)  # S3_ERROR when the store is down: nothing changed yet
    if stored is None:
        raise UploadMissing(details={"reason": "object_missing"})
    if stored != photo.size_bytes:
        storage.object_delete(key)
        Photo.objects.filter(pk=photo.pk, state=Photo.State.PENDING).delete()
        reason = "too_large" if stored > photo.size_bytes else "size_mismatch"
        metrics.PHOTO_UPLOADS_REFUSED.labels(reason).inc()
        details = {"reason": reason, "declared_bytes": photo.size_bytes, "stored_bytes": stored}
        if stored > photo.size_bytes:
            raise PhotoTooLarge("The uploaded object is larger than the declared size; it was deleted.", details=details)
        raise PhotoSizeMismatch(details=details)
    with transaction.atomic():
        # Only the request whose UPDATE moves the row out of PENDING counts it (two racing
        # completes, or a delete in between, must not count twice or resurrect a photo).
        won = Photo.objects.filter(pk=photo.pk, state=Photo.State.PENDING).update(
            state=Photo.State.AVAILABLE, completed_at=now()
        )
        if won:
            _usage_add(book_id=photo.book_id, count=1, nbytes=photo.size_bytes)
            audit_event_record(
                event_type=EventType.PHOTO_UPLOADED, outcome=Outcome.SUCCESS, actor_device_id=device_id,
                book_id=photo.book_id, target=_audit_target(photo.pk), details={"size_bytes": photo.size_bytes},
            )  # fmt: skip
    if won:
        metrics.PHOTO_UPLOADS_COMPLETED.inc()
    photo = Photo.objects.filter(pk=photo.pk, state=Photo.State.AVAILABLE).first()
    if photo is None:
        raise PhotoNotFound()  # deleted while we checked
    return photo


def photo_delete(
    *, device_id: uuid.UUID | None, book_id: uuid.UUID, photo_id: uuid.UUID, admin_user_id: int | None = None
) -> None:
    """Delete the object, then the row; with the store down nothing changes (S3_ERROR)."""
    with transaction.atomic():
        photo = Photo.objects.select_for_update().filter(pk=photo_id, book_id=book_id).first()
        if photo is None:
            raise PhotoNotFound()
        # Inside the transaction on purpose: if the store refuses, the row stays; if the commit
        # fails after the object went, the row remains and a second DELETE finishes the job.
        storage.object_delete(photo.s3_key)
        Photo.objects.filter(pk=photo.pk).delete()
        if photo.state == Photo.State.AVAILABLE:
            _usage_add(book_id=photo.book_id, count=-1, nbytes=-photo.size_bytes)
            audit_event_record(
                event_type=EventType.PHOTO_DELETED, outcome=Outcome.SUCCESS, actor_device_id=device_id,
                book_id=photo.book_id, target=_audit_target(photo.pk),
                details={"by": "admin", "admin_user_id": admin_user_id} if admin_user_id else {"by": "device"},
            )  # fmt: skip


@dataclass
class CleanupReport:
    expired_uploads: list[str] = field(default_factory=list)
    orphan_objects: list[str] = field(default_factory=list)
    partial_files: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {
            "dry_run": self.dry_run, "expired_uploads": len(self.expired_uploads),
            "orphan_objects": len(self.orphan_objects), "partial_files": len(self.partial_files),
        }  # fmt: skip


def photos_cleanup(*, dry_run: bool = False, progress=None) -> CleanupReport:
    """Remove uploads never completed within PHOTO_PENDING_MAX_SECONDS (object and row) and objects
    whose row is gone. Safe to run twice and on several nodes: each removal is conditional."""
    report = CleanupReport(dry_run=dry_run)
    at = now()
    pending_cutoff = at - timedelta(seconds=settings.PHOTO_PENDING_MAX_SECONDS)
    expired = Photo.objects.filter(state=Photo.State.PENDING, created_at__lt=pending_cutoff).only("id", "book_id")
    for photo in expired.iterator():
        report.expired_uploads.append(photo.s3_key)
        if not dry_run:
            storage.object_delete(photo.s3_key)
            Photo.objects.filter(pk=photo.pk, state=Photo.State.PENDING, created_at__lt=pending_cutoff).delete()
            metrics.PHOTO_CLEANUP_REMOVED.labels("expired_upload").inc()
    if progress:
        progress(f"expired uploads: {len(report.expired_uploads)}")
    # An object younger than an upload URL's life may belong to a row another transaction is
    # about to commit; leave it to the next run.
    object_cutoff = at - timedelta(seconds=settings.PHOTO_UPLOAD_URL_SECONDS)
    batch: list[storage.StoredObject] = []
    seen = 0
    for stored in storage.objects_list():
        if stored.modified_at < object_cutoff:
            batch.append(stored)
        seen += 1
        if len(batch) >= 500:
            _orphans_remove(batch, report, dry_run)
            batch = []
        if progress and seen % 10_000 == 0:
            progress(f"objects scanned: {seen}, orphans: {len(report.orphan_objects)}")
    _orphans_remove(batch, report, dry_run)
    report.partial_files = storage.partial_uploads_purge(older_than=pending_cutoff.timestamp(), dry_run=dry_run)
    if progress:
        progress(f"objects scanned: {seen}, orphans: {len(report.orphan_objects)}")
    logger.info("photos cleanup", extra=report.as_dict())
    return report


def _orphans_remove(batch: list[storage.StoredObject], report: CleanupReport, dry_run: bool) -> None:
    ids = {}
    for stored in batch:
        try:
            ids[uuid.UUID(stored.key.rsplit("/", 1)[-1].removesuffix(".enc"))] = stored.key
        except ValueError:
            continue
    known = set(Photo.objects.filter(pk__in=list(ids)).values_list("pk", flat=True))
    for photo_id, key in ids.items():
        if photo_id in known:
            continue
        report.orphan_objects.append(key)
        if not dry_run:
            storage.object_delete(key)
            metrics.PHOTO_CLEANUP_REMOVED.labels("orphan_object").inc()


def _usage_add(*, book_id: uuid.UUID, count: int, nbytes: int) -> None:
    # One UPDATE with F(): concurrent completes of one book add up in the database, not in Python.
    updated = BookPhotoUsage.objects.filter(book_id=book_id).update(
        photo_count=F("photo_count") + count, total_bytes=F("total_bytes") + nbytes
    )
    if not updated:
        BookPhotoUsage.objects.get_or_create(book_id=book_id)
        BookPhotoUsage.objects.filter(book_id=book_id).update(
            photo_count=F("photo_count") + count, total_bytes=F("total_bytes") + nbytes
        )


def _audit_target(photo_id: uuid.UUID) -> str:
    return f"photo:{id_hash('photo', photo_id)}"
