"""`manage.py audit verify [--since DATE]` walks the hash chain and exits 1 at the first broken
link; `manage.py audit purge [--dry-run] [--days N]` applies the retention."""

from __future__ import annotations

from datetime import datetime, time, timezone

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import audit_chain_verify, audit_events_purge


class Command(BaseCommand):
    help = "Audit trail operations."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="Check that no audit row was edited, removed or reordered.")
        verify.add_argument("--since", help="YYYY-MM-DD: start at that day's first event.")
        purge = sub.add_parser("purge", help="Delete events past the retention (AUDIT_RETENTION_DAYS).")
        purge.add_argument("--dry-run", action="store_true", help="Only say how many events would go.")
        purge.add_argument("--days", type=int, default=None, help="Retention in days (default: the setting).")

    def handle(self, *args, action, **options):
        if action == "purge":
            return self._purge(options)
        since = None
        if options.get("since"):
            since = datetime.combine(datetime.strptime(options["since"], "%Y-%m-%d").date(), time.min, tzinfo=timezone.utc)
        checked, broken = audit_chain_verify(since=since)
        if broken:
            raise CommandError(f"audit chain broken at event {broken.event_id} after {checked} good rows: {broken.reason}")
        self.stdout.write(f"audit chain intact: {checked} events verified")

    def _purge(self, options):
        days = options["days"] if options["days"] is not None else settings.AUDIT_RETENTION_DAYS
        if options["dry_run"]:
            count = audit_events_purge(older_than_days=days, dry_run=True)
            self.stdout.write(f"{count} events older than {days} days would be deleted (dry run)")
            return
        deleted = audit_events_purge(
            older_than_days=days,
            progress=lambda done, total: self.stdout.write(f"deleted {done}/{total} events"),
        )
        self.stdout.write(f"{deleted} events older than {days} days deleted; chain anchor moved")
