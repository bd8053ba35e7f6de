"""The backups app's admin: share delivery's and server backups' registrations live in their own modules."""

from apps.backups.delivery import admin as _delivery_admin  # noqa: F401
from apps.backups.engine import admin as _engine_admin  # noqa: F401
