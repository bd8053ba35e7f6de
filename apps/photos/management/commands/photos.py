"""`manage.py photos cleanup [--dry-run]`: what the periodic cleanup does, on demand."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.photos import services, storage


class Command(BaseCommand):
    help = "Photo hygiene: `photos cleanup` removes expired uploads and orphan objects; --dry-run only lists them."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["cleanup"])
        parser.add_argument("--dry-run", action="store_true", help="Show what would be removed; remove nothing.")

    def handle(self, *args, **options):
        dry_run = options["dry_run"]
        try:
            report = services.photos_cleanup(dry_run=dry_run, progress=lambda line: self.stderr.write(line))
        except storage.StorageUnavailable as exc:
            raise CommandError(f"object storage unreachable: {exc.message}") from exc
        verb = "would remove" if dry_run else "removed"
        for key in report.expired_uploads:
            self.stdout.write(f"{verb} expired upload {key}")
        for key in report.orphan_objects:
            self.stdout.write(f"{verb} orphan object {key}")
        for name in report.partial_files:
            self.stdout.write(f"{verb} partial upload file {name}")
        self.stdout.write(
            f"{verb}: {len(report.expired_uploads)} expired upload(s), {len(report.orphan_objects)} orphan object(s), "
            f"{len(report.partial_files)} partial file(s)"
        )
