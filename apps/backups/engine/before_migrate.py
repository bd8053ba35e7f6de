"""The "before migrate" trigger: a database snapshot before `manage.py migrate` changes the schema.

Connected to Django's `pre_migrate` signal (apps/backups/apps.py), which `migrate` sends once per
app before it applies anything; we answer the one for this app. With BACKUP_BEFORE_MIGRATE on and
migrations to apply to a database that already has tables, it takes a database backup in the
migrating process, synchronously, into BACKUP_REPOSITORY (manifest `trigger: pre_migrate`): if that
backup fails, migrate stops before touching the schema (set BACKUP_BEFORE_MIGRATE=0 to migrate
anyway). Off by default: test databases and a first `migrate` have nothing to keep.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connections

logger = logging.getLogger(__name__)


def backup_before_migrate(sender, *, plan=None, using="default", verbosity=1, stdout=None, **kwargs) -> str | None:
    """pre_migrate receiver: the snapshot id taken, or None when none was needed."""
    if not settings.BACKUP_BEFORE_MIGRATE or not plan or using != "default":
        return None
    if not connections[using].introspection.table_names():
        return None  # a new, empty database: nothing to keep
    from apps.backups.engine import services
    from apps.backups.engine.repository import RepositoryError
    from apps.backups.engine.sources import SourceError

    say = (lambda line: stdout.write(line + "\n")) if stdout is not None and verbosity else None
    try:
        manifest = services.backup_create(backup_type="database", schedule="", progress=say, trigger="pre_migrate")
    except (RepositoryError, SourceError, OSError) as exc:
        raise CommandError(f"the backup before migrate failed ({exc}); migrate stopped. Fix it, or set BACKUP_BEFORE_MIGRATE=0.") from None
    logger.warning("backup.before_migrate", extra={"snapshot_id": manifest["id"], "migrations": len(plan)})
    return manifest["id"]
