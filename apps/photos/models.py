"""Photo metadata (the bytes live in object storage, encrypted by the device) and per-book usage."""

from __future__ import annotations

import uuid

from django.db import models

from apps.pairing.models import Book


class Photo(models.Model):
    class State(models.TextChoices):
        # A row is made before the upload URL is issued, so every object in the store has had a
        # row: an object without one is an orphan the cleanup may remove.
        PENDING = "pending", "pending upload"
        AVAILABLE = "available", "available"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="photos")
    # The device's ledger transaction this photo belongs to: an opaque id, never interpreted.
    transaction_id = models.CharField(max_length=64)
    uploaded_by = models.UUIDField(help_text="The device that asked for the upload URL.")
    size_bytes = models.PositiveIntegerField()
    mime_type = models.CharField(max_length=100)
    # SHA-256 of the ciphertext as the device declared it (hex), for the device's own checks.
    sha256 = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["book", "state", "-created_at", "-id"], name="photo_book_listing"),
            models.Index(fields=["state", "created_at"], name="photo_state_age"),
        ]

    def __str__(self) -> str:
        return f"photo {self.id}"

    @property
    def s3_key(self) -> str:
        from apps.photos.storage import photo_key

        return photo_key(book_id=self.book_id, photo_id=self.pk)


class BookPhotoUsage(models.Model):
    """Available photos of a book and their bytes, kept in step by the services (for admin and quotas)."""

    book = models.OneToOneField(Book, on_delete=models.CASCADE, primary_key=True, related_name="photo_usage")
    photo_count = models.PositiveIntegerField(default=0)
    total_bytes = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "book photo usage"

    def __str__(self) -> str:
        return f"photo usage of book {self.book_id}"
