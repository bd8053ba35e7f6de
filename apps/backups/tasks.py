"""The backups app's Celery tasks and periodic schedule (collected by homepocket/periodic.py)."""

from apps.backups.delivery.tasks import PERIODIC_TASKS as DELIVERY_PERIODIC_TASKS
from apps.backups.delivery.tasks import share_deliveries_expire_task, share_delivery_requests_purge_task  # noqa: F401
from apps.backups.engine.tasks import PERIODIC_TASKS as ENGINE_PERIODIC_TASKS
from apps.backups.engine.tasks import (  # noqa: F401
    backup_delays_check_task,
    backup_retention_apply_task,
    backup_run_task,
    backup_scheduled_run_task,
)

PERIODIC_TASKS = [*DELIVERY_PERIODIC_TASKS, *ENGINE_PERIODIC_TASKS]
