"""Share delivery's periodic work: fail deliveries past their deadline, forget old request nonces.

Both tasks are safe to run twice (the conditional UPDATE and the delete find nothing the second
time). A database that is briefly unreachable is retried with exponential backoff (Celery's
retry_backoff: 2, 4, 8 … s with full jitter, at most 5 tries) before the next beat tries anyway.
"""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from apps.backups.delivery.services import share_deliveries_expire, share_delivery_requests_purge
from apps.cluster.jobs import JobLease, job_fenced_atomic, job_run_once
from homepocket.periodic import PeriodicTaskSpec

_RETRY = {"autoretry_for": (OperationalError, InterfaceError), "retry_backoff": 2, "retry_backoff_max": 120,
          "retry_jitter": True, "max_retries": 5}  # fmt: skip


@shared_task(name="backups.share_deliveries_expire", **_RETRY)
def share_deliveries_expire_task() -> int:
    """FAILED for every PENDING/DELIVERED delivery past its deadline, once per cluster; None when skipped."""

    def expire(lease: JobLease) -> int:
        with job_fenced_atomic(lease):  # one transaction: a stale holder changes nothing
            return share_deliveries_expire()

    return job_run_once("share-deliveries-expire", expire)


@shared_task(name="backups.share_delivery_requests_purge", **_RETRY)
def share_delivery_requests_purge_task() -> int:
    """Delete request nonces older than twice the replay window, once per cluster; None when skipped."""

    def purge(lease: JobLease) -> int:
        with job_fenced_atomic(lease):
            return share_delivery_requests_purge()

    return job_run_once("share-delivery-requests-purge", purge)


PERIODIC_TASKS = [
    PeriodicTaskSpec(
        name="share-deliveries-expire",
        task="backups.share_deliveries_expire",
        every_seconds=300,
        description="Fail share deliveries not confirmed by their deadline.",
    ),
    PeriodicTaskSpec(
        name="share-delivery-requests-purge",
        task="backups.share_delivery_requests_purge",
        every_seconds=600,
        description="Forget share request nonces past the replay window.",
    ),
]
