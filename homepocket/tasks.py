"""Project-wide housekeeping tasks."""

from __future__ import annotations

from celery import shared_task
from django.core.management import call_command

from homepocket.periodic import PeriodicTaskSpec


@shared_task(name="homepocket.sessions_clear_expired")
def sessions_clear_expired() -> None:
    """Delete expired admin sessions (Django keeps them until told to)."""
    call_command("clearsessions")


PERIODIC_TASKS = [
    PeriodicTaskSpec(
        name="sessions-clear-expired",
        task="homepocket.sessions_clear_expired",
        every_seconds=24 * 3600,
        description="Delete expired operator sessions.",
    ),
]
