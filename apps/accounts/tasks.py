"""Rotated API keys are revoked once their grace (API_KEY_ROTATION_GRACE_SECONDS) has run out."""

from __future__ import annotations

from celery import shared_task

from apps.accounts.services import rotated_keys_retire
from apps.cluster.jobs import job_run_once
from homepocket.periodic import PeriodicTaskSpec


@shared_task(name="accounts.rotated_keys_retire")
def rotated_keys_retire_task() -> int | None:
    """Revoke rotated keys past their grace, once per cluster; None when skipped."""
    # Lock only, no fence: revoking is a conditional UPDATE (only keys not yet revoked).
    return job_run_once("accounts-rotated-keys-retire", lambda lease: rotated_keys_retire())


PERIODIC_TASKS = [
    PeriodicTaskSpec(
        name="accounts-rotated-keys-retire",
        task="accounts.rotated_keys_retire",
        every_seconds=60,
        description="Revoke rotated API keys whose grace has run out.",
    ),
]
