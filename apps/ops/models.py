"""The embedded mode's store of the dashboard's aggregates (the distributed mode keeps them in Redis)."""

from django.db import models


class OpsCounter(models.Model):
    """One aggregate field of one minute or hour, summed over every process (apps/ops/aggregates.py)."""

    resolution = models.CharField(max_length=1, choices=[("m", "minute"), ("h", "hour")])
    at = models.DateTimeField(help_text="Start of the minute or hour, UTC.")
    name = models.CharField(max_length=64, help_text='An endpoint group field ("signing|n") or "relay|deliveries".')
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["resolution", "at", "name"], name="ops_counter_once")]
        indexes = [models.Index(fields=["resolution", "at"], name="ops_counter_range")]

    def __str__(self) -> str:
        return f"{self.resolution} {self.at:%Y-%m-%d %H:%M} {self.name}={self.value}"
