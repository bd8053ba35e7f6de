"""The snapshot catalog: rows for the admin and the API, rebuilt from the repository on demand.

The repository is the truth (it restores without any database); the catalog is a copy that a
rebuild makes exact again: new snapshots added, forgotten ones removed, holds refreshed.
`archived` is the catalog's own mark (retention's archive_after_days) and survives a rebuild.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from apps.backups.engine import services
from apps.backups.engine.models import SnapshotRecord


def backup_catalog_rebuild(*, repository: str | None = None) -> dict:
    """Make the catalog of `repository` (default: BACKUP_REPOSITORY) match it; {"added", "updated", "removed"}."""
    repo = services.backup_repository_open(repository=repository)
    manifests = repo.snapshots()
    holds = repo.holds()
    now = timezone.now()
    counts = {"added": 0, "updated": 0, "removed": 0}
    with transaction.atomic():
        existing = set(SnapshotRecord.objects.filter(location_url=repo.location).values_list("snapshot_id", flat=True))
        for manifest in manifests:
            stats = manifest["stats"]
            _, created = SnapshotRecord.objects.update_or_create(
                location_url=repo.location, snapshot_id=manifest["id"],
                defaults={
                    "kind": manifest.get("kind", ""), "schedule_name": manifest.get("schedule", ""),
                    "started_at": datetime.fromisoformat(manifest["started_at"]), "finished_at": datetime.fromisoformat(manifest["finished_at"]),
                    "duration_seconds": manifest["duration_seconds"], "bytes_in": stats["bytes_in"], "bytes_added": stats["bytes_stored_new"],
                    "files": len(manifest["files"]), "held": manifest["id"] in holds, "source_version": manifest.get("source_version", {}),
                    "catalogued_at": now,
                },
            )  # fmt: skip
            counts["added" if created else "updated"] += 1
        gone = existing - {m["id"] for m in manifests}
        counts["removed"] = SnapshotRecord.objects.filter(location_url=repo.location, snapshot_id__in=gone).delete()[0]
    return counts
