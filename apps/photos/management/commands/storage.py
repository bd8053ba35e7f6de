"""`manage.py storage init`: create the bucket (S3) or the objects directory (embedded mode)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.photos import storage


class Command(BaseCommand):
    help = "Object storage set-up: `storage init` creates the S3 bucket or the local objects directory if missing."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["init"])

    def handle(self, *args, **options):
        try:
            self.stdout.write(storage.store_init())
        except storage.StorageUnavailable as exc:
            raise CommandError(f"object storage unreachable: {exc.message}") from exc
