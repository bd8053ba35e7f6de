"""`manage.py hotconfig show | set [--maintenance on|off] [--message M] [--retry-after N] [--log-level L|default] | switch NAME on|off|delete`.

The same services as the admin: audited, and every node applies the change within seconds.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.cluster import services
from apps.cluster.hot_config import hot_config_read
from apps.cluster.models import LogLevel

_ON_OFF = {"on": True, "off": False}


class Command(BaseCommand):
    help = "Show or change the hot configuration (maintenance mode, log level, feature switches)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("show", help="Print the configuration the database holds.")
        change = sub.add_parser("set", help="Change runtime settings.")
        change.add_argument("--maintenance", choices=sorted(_ON_OFF))
        change.add_argument("--message", help="the maintenance message apps are shown")
        change.add_argument("--retry-after", type=int, help="seconds, sent as Retry-After during maintenance")
        change.add_argument("--log-level", choices=[*(level for level in LogLevel.values if level), "default"])
        switch = sub.add_parser("switch", help="Turn a feature switch on or off, or delete it.")
        switch.add_argument("name")
        switch.add_argument("state", choices=["on", "off", "delete"])
        switch.add_argument("--description")

    def handle(self, *args, action, **options):
        try:
            if action == "set":
                self._set(options)
            elif action == "switch":
                self._switch(options)
        except (ValidationError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        config = hot_config_read()
        self.stdout.write(
            f"version {config.version}: maintenance {'on' if config.maintenance else 'off'}, "
            f"log level {config.log_level or 'default'}, switches {config.switches or '{}'}"
        )

    def _set(self, options):
        changes = {}
        if options["maintenance"] is not None:
            changes["maintenance"] = _ON_OFF[options["maintenance"]]
        if options["message"] is not None:
            changes["maintenance_message"] = options["message"]
        if options["retry_after"] is not None:
            changes["maintenance_retry_after"] = options["retry_after"]
        if options["log_level"] is not None:
            changes["log_level"] = "" if options["log_level"] == "default" else options["log_level"]
        if not changes:
            raise CommandError("nothing to change: give --maintenance, --message, --retry-after or --log-level")
        services.runtime_config_update(changes=changes)

    def _switch(self, options):
        if options["state"] == "delete":
            if not services.feature_switch_delete(name=options["name"]):
                raise CommandError(f"no switch named {options['name']!r}")
            return
        services.feature_switch_set(name=options["name"], enabled=_ON_OFF[options["state"]], description=options["description"])
