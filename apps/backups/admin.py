"""The backups app's admin: share delivery's registrations live in their own module."""

from apps.backups.delivery import admin as _delivery_admin  # noqa: F401
