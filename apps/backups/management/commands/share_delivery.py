"""`manage.py share_delivery status <id>` | `list [--state FAILED]` | `retry <id>` (FAILED → PENDING, audited)."""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError

from apps.backups.delivery import selectors, services
from apps.backups.delivery.models import DeliveryStatus
from homepocket.api.errors import ApplicationError


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise CommandError(f"not a delivery id: {text!r}") from None


class Command(BaseCommand):
    help = "Share delivery operations: status, list, retry."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        status = sub.add_parser("status", help="One delivery's state and history.")
        status.add_argument("delivery_id")
        listing = sub.add_parser("list", help="Deliveries, newest first.")
        listing.add_argument("--state", choices=DeliveryStatus.values)
        listing.add_argument("--limit", type=int, default=100)
        retry = sub.add_parser("retry", help="Put a FAILED delivery back to PENDING (audited).")
        retry.add_argument("delivery_id")

    def handle(self, *args, action, **options):
        try:
            if action == "list":
                for row in selectors.share_deliveries_list(status=options["state"], limit=options["limit"]):
                    self.stdout.write(self._line(row))
                return
            delivery_id = _uuid(options["delivery_id"])
            if action == "retry":
                delivery = services.share_delivery_retry(delivery_id=delivery_id)
                self.stdout.write(f"{delivery.pk} back to {delivery.status}")
                return
            delivery = selectors.share_delivery_get(delivery_id=delivery_id)
        except ApplicationError as error:
            raise CommandError(f"{error.code}: {error.message} {error.details or ''}".strip()) from None
        self.stdout.write(self._line(delivery))
        for step in selectors.share_delivery_history(delivery_id=delivery.pk):
            self.stdout.write(f"  {step.at:%Y-%m-%dT%H:%M:%SZ} {step.from_status or '-'} -> {step.to_status} "
                              f"({step.reason}, tries {step.retry_count})")  # fmt: skip

    @staticmethod
    def _line(row) -> str:
        return (f"{row.pk} {row.status} backup={row.backup_id} recipient={row.recipient_device_id} "
                f"retries={row.retry_count} last_error={row.last_error or '-'} created={row.created_at:%Y-%m-%dT%H:%M:%SZ}")  # fmt: skip
