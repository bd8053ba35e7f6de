"""`manage.py audit verify [--since DATE]`: walk the hash chain, exit 1 at the first broken link."""

from __future__ import annotations

from datetime import datetime, time, timezone

from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import audit_chain_verify


class Command(BaseCommand):
    help = "Audit trail operations."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="Check that no audit row was edited, removed or reordered.")
        verify.add_argument("--since", help="YYYY-MM-DD: start at that day's first event.")

    def handle(self, *args, action, **options):
        since = None
        if options.get("since"):
            since = datetime.combine(datetime.strptime(options["since"], "%Y-%m-%d").date(), time.min, tzinfo=timezone.utc)
        checked, broken = audit_chain_verify(since=since)
        if broken:
            raise CommandError(f"audit chain broken at event {broken.event_id} after {checked} good rows: {broken.reason}")
        self.stdout.write(f"audit chain intact: {checked} events verified")
