"""The database side of the one-run-per-cluster jobs (apps/cluster/jobs.py)."""

from django.db import models


class JobFence(models.Model):
    """The highest fencing token that has written for a job.

    A job holder that paused past its lock's TTL (a GC pause, a frozen VM) still believes it holds
    the lock; its fencing token is then lower than the new holder's, and the conditional advance of
    this row inside its write transaction refuses it (Kleppmann, "How to do distributed locking").
    """

    name = models.CharField(max_length=100, primary_key=True)
    token = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.name}: {self.token}"
