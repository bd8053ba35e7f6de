"""The backups app's Celery tasks and periodic schedule (collected by homepocket/periodic.py)."""

from apps.backups.delivery.tasks import (  # noqa: F401
    PERIODIC_TASKS,
    share_deliveries_expire_task,
    share_delivery_requests_purge_task,
)
