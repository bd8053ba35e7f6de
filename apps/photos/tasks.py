"""Photo hygiene: uploads never completed and objects whose row is gone are removed periodically."""

from __future__ import annotations

from celery import shared_task

from apps.cluster.jobs import job_run_once
from apps.photos.services import photos_cleanup
from homepocket.periodic import PeriodicTaskSpec


@shared_task(name="photos.cleanup")
def photos_cleanup_task() -> dict:
    """Remove expired uploads and orphan objects, once per cluster (apps/cluster/jobs.py); None when skipped."""
    # Lock only, no fence: each removal is conditional, and S3 deletes cannot join a DB transaction.
    return job_run_once("photos-cleanup", lambda lease: photos_cleanup().as_dict())


PERIODIC_TASKS = [
    PeriodicTaskSpec(
        name="photos-cleanup",
        task="photos.cleanup",
        every_seconds=15 * 60,
        description="Remove photo uploads never completed after an hour (object and row) and objects without a row.",
    ),
]
