"""`manage.py revoke_tokens --device ID ... --api-key ID ...`: refuse every token issued until now.

A device stays paired and signs new tokens; its earlier ones (and its open sockets, on every
node) are refused. An API key is rotated: its new secret is printed once, the old one refused.
"""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError

from apps.pairing import services
from apps.quotas.services import api_key_rotate


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CommandError(f"not a UUID: {value!r}") from None


class Command(BaseCommand):
    help = "Bump tokens_valid_after of devices (sign them out everywhere) or API keys (rotate their secret)."

    def add_arguments(self, parser):
        parser.add_argument("--device", action="append", default=[], help="a device id (repeatable)")
        parser.add_argument("--api-key", action="append", default=[], dest="api_keys", help="an API key id (repeatable)")

    def handle(self, *args, device, api_keys, **options):
        devices, keys = [_uuid(v) for v in device], [_uuid(v) for v in api_keys]
        if not devices and not keys:
            raise CommandError("name at least one --device or --api-key")
        missing = []
        if devices:
            count = services.device_tokens_revoke(device_ids=devices)
            self.stdout.write(f"devices: tokens revoked for {count} of {len(devices)}")
            if count < len(devices):
                missing.append("device")
        for index, key_id in enumerate(keys, 1):
            rotated = api_key_rotate(key_id=key_id)
            if rotated is None:
                self.stderr.write(f"[{index}/{len(keys)}] API key {key_id}: no active key with this id")
                missing.append("api key")
                continue
            self.stdout.write(f"[{index}/{len(keys)}] API key {key_id} rotated; its new secret, shown this once:\n{rotated[1]}")
        if missing:
            raise CommandError("some ids are unknown or revoked (see above); the others were done")
