"""Start-up checks of the backup settings: an unknown codec or a job count below 1 fails before the first backup would."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from apps.backups.engine.codecs import CODEC_NAMES


@register()
def check_backup_compression(app_configs, **kwargs):
    if settings.BACKUP_COMPRESSION in CODEC_NAMES:
        return []
    return [
        Error(
            f"BACKUP_COMPRESSION is {settings.BACKUP_COMPRESSION!r}, not a codec this server writes.",
            hint=f"Use one of {', '.join(CODEC_NAMES)} (docs/configuration.md).",
            id="backups.E001",
        )
    ]


@register()
def check_backup_postgres_jobs(app_configs, **kwargs):
    return [
        Error(
            f"{name} is {getattr(settings, name)!r}: pg_dump and pg_restore need at least 1 job.",
            hint="Use 1 (one custom-format dump, restored by one job) or more (docs/configuration.md).",
            id="backups.E020",
        )
        for name in ("BACKUP_PG_DUMP_JOBS", "BACKUP_PG_RESTORE_JOBS")
        if not isinstance(getattr(settings, name), int) or getattr(settings, name) < 1
    ]
