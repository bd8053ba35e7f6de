"""`manage.py quota policies` lists the rate-limit policies; `quota set SCOPE --plan P ...` edits one.

The admin is the usual place to edit policies; this is for scripts and deployments. Edits go
through the same service (audited, live on every node within RATELIMIT_POLICY_TTL seconds).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.quotas import services
from apps.quotas.models import FailMode, Plan, Policy


class Command(BaseCommand):
    help = "List or edit rate-limit policies."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("policies", help="List every policy.")
        change = sub.add_parser("set", help="Change one policy's limit or fail mode.")
        change.add_argument("scope")
        change.add_argument("--plan", choices=Plan.values, required=True)
        change.add_argument("--limit", help="A number, or 'unlimited'.")
        change.add_argument("--fail-mode", choices=FailMode.values)

    def handle(self, *args, action, **options):
        if action == "policies":
            for policy in Policy.objects.all():
                limit = "unlimited" if policy.limit is None else policy.limit
                self.stdout.write(
                    f"{policy.scope:<18} {policy.plan:<8} {policy.subject:<8} {limit!s:>10} per {policy.window:<6} fail {policy.fail_mode}"
                )
            return
        policy = Policy.objects.filter(scope=options["scope"], plan=options["plan"]).first()
        if policy is None:
            raise CommandError(f"no policy {options['scope']} for plan {options['plan']} (see `quota policies`)")
        changed = []
        if options["limit"] is not None:
            policy.limit = None if options["limit"] == "unlimited" else _positive(options["limit"])
            changed.append("limit")
        if options["fail_mode"]:
            policy.fail_mode = options["fail_mode"]
            changed.append("fail_mode")
        if not changed:
            raise CommandError("nothing to change: give --limit and/or --fail-mode")
        services.policy_update(policy=policy, changed_fields=changed)
        self.stdout.write(f"{policy} (fail {policy.fail_mode})")


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise CommandError("--limit is a whole number or 'unlimited'") from None
    if number < 0:
        raise CommandError("--limit cannot be negative")
    return number
