"""Photo hygiene: uploads never completed and objects whose row is gone are removed periodically."""

from __future__ import annotations

from celery import shared_task

from apps.photos.services import photos_cleanup
from homepocket.periodic import PeriodicTaskSpec


@shared_task(name="photos.cleanup")
def photos_cleanup_task() -> dict:
    """Remove expired uploads and orphan objects (safe to run twice: each removal is conditional)."""
    return photos_cleanup().as_dict()


PERIODIC_TASKS = [
    PeriodicTaskSpec(
        name="photos-cleanup",
        task="photos.cleanup",
        every_seconds=15 * 60,
        description="Remove photo uploads never completed after an hour (object and row) and objects without a row.",
    ),
]
