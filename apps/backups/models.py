"""The backups app's models: share delivery now; the server-backup engine adds its own module beside it."""

from apps.backups.delivery.models import (  # noqa: F401
    DeliveryServerKey,
    DeliveryStatus,
    ShareDelivery,
    ShareDeliveryRequest,
    ShareDeliveryTransition,
)
