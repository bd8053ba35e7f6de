"""`manage.py apikey create --name N [--scope S ...] [--rpm N --daily N --monthly N]`, `apikey revoke ID`
and `apikey unsuspend ID` (lift an abuse suspension, as the admin's action does)."""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError

from apps.quotas import abuse, services


class Command(BaseCommand):
    help = "Create or revoke API keys of service callers."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a key and print it once.")
        create.add_argument("--name", required=True)
        create.add_argument("--scope", action="append", default=[], help="e.g. audit:read (repeatable)")
        for limit in ("rpm", "daily", "monthly"):
            create.add_argument(f"--{limit}", type=int, default=None)
        revoke = sub.add_parser("revoke", help="Revoke a key by its id.")
        revoke.add_argument("key_id")
        unsuspend = sub.add_parser("unsuspend", help="Lift the abuse suspension of a key and resolve its flags.")
        unsuspend.add_argument("key_id")

    def handle(self, *args, action, **options):
        if action == "create":
            key, clear = services.api_key_create(
                name=options["name"], scopes=options["scope"],
                rpm=options["rpm"], daily=options["daily"], monthly=options["monthly"],
            )  # fmt: skip
            self.stdout.write(f"API key {key.pk} ({key.name}); shown this once, store it now:\n{clear}")
            return
        try:
            key_id = uuid.UUID(options["key_id"])
        except ValueError:
            raise CommandError("the key id is a UUID (see the admin or the create output)") from None
        if action == "unsuspend":
            if not abuse.api_keys_suspension_lift(key_ids=[key_id]):
                raise CommandError("no suspended API key with this id")
            self.stdout.write(f"API key {options['key_id']}: suspension lifted")
            return
        if not services.api_keys_revoke(key_ids=[key_id]):
            raise CommandError("no active API key with this id")
        self.stdout.write(f"API key {options['key_id']} revoked")
