"""manage.py account_key_create --user NAME --name KEYNAME [--scopes a,b] [--daily N] [--monthly N] [--rpm N]"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.services import account_api_key_create


class Command(BaseCommand):
    help = "Create an API key owned by a user (its account page shows it); prints the key once."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", default="")
        parser.add_argument("--rpm", type=int)
        parser.add_argument("--daily", type=int)
        parser.add_argument("--monthly", type=int)

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user {options['user']!r}")
        scopes = [scope for scope in options["scopes"].split(",") if scope]
        _, clear = account_api_key_create(
            user=user, name=options["name"], scopes=scopes, rpm=options["rpm"], daily=options["daily"], monthly=options["monthly"]
        )
        self.stdout.write(clear)
