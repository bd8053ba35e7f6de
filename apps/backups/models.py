"""The backups app's models: share delivery (delivery/) and server backups (engine/models.py)."""

from apps.backups.delivery.models import (  # noqa: F401
    DeliveryServerKey,
    DeliveryStatus,
    ShareDelivery,
    ShareDeliveryRequest,
    ShareDeliveryTransition,
)
from apps.backups.engine.models import (  # noqa: F401
    BackupAlert,
    BackupRun,
    BackupSchedule,
    SnapshotRecord,
    StorageLocation,
)
