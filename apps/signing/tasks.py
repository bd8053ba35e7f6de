"""Signing's periodic task: turn closed minutes of usage into one audit event per key each."""

from __future__ import annotations

from celery import shared_task

from apps.cluster.jobs import job_run_once
from apps.signing.usage import signing_usage_record
from homepocket.periodic import PeriodicTaskSpec


@shared_task(name="signing.usage_record")
def signing_usage_record_task() -> int:
    """Record closed usage minutes, once per cluster (apps/cluster/jobs.py); None when skipped."""
    # Lock only, no fence: every row is claimed by a conditional UPDATE in its own transaction.
    return job_run_once("signing-usage-record", lambda lease: signing_usage_record())


PERIODIC_TASKS = [
    PeriodicTaskSpec(
        name="signing-usage-record",
        task="signing.usage_record",
        every_seconds=60,
        description="One signing.usage audit event per key per closed minute.",
    ),
]
