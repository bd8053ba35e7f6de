"""Start-up checks of the backup settings: an unknown codec fails before the first backup would."""

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
