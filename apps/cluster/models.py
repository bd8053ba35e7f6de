"""The database side of the one-run-per-cluster jobs (apps/cluster/jobs.py) and of hot configuration."""

from django.core.validators import RegexValidator
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


class LogLevel(models.TextChoices):
    DEFAULT = "", "the LOG_LEVEL of the environment"
    DEBUG = "DEBUG", "DEBUG"
    INFO = "INFO", "INFO"
    WARNING = "WARNING", "WARNING"
    ERROR = "ERROR", "ERROR"


class RuntimeConfig(models.Model):
    """The settings operators change at run time (docs/cluster.md, "Hot configuration"): one row.

    Saved through apps.cluster.services, which bumps `version` and tells every node; each node
    applies the row within seconds and reads it at start (apps/cluster/hot_config.py).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    log_level = models.CharField(max_length=8, choices=LogLevel.choices, blank=True, default=LogLevel.DEFAULT)
    maintenance = models.BooleanField(
        default=False, help_text="Refuse changes through the API with 503 MAINTENANCE; reads, the relay and signing go on."
    )
    maintenance_message = models.CharField(max_length=200, blank=True, help_text="Shown to apps in the 503's details.")
    maintenance_retry_after = models.PositiveIntegerField(default=300, help_text="Seconds, sent as Retry-After.")
    version = models.PositiveBigIntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "runtime configuration"

    def __str__(self) -> str:
        return f"runtime configuration v{self.version}"


class FeatureSwitch(models.Model):
    """A named switch code asks with `apps.cluster.hot_config.switch_enabled(name)`."""

    name = models.CharField(
        max_length=64, unique=True, help_text='e.g. "photos.thumbnails": lower-case letters, digits, ".", "_", "-"',
        validators=[RegexValidator(r"^[a-z0-9][a-z0-9._-]*$", "Lower-case letters, digits, '.', '_' and '-'.")],
    )
    enabled = models.BooleanField(default=False)
    description = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {'on' if self.enabled else 'off'}"
