"""Closed sockets' last-seen writes: one conditional UPDATE for many devices (apps/relay/last_seen.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from apps.pairing.models import Device
from apps.relay import last_seen, services


def test_devices_seen_marks_every_device_in_one_call(family, alice, bob):
    Device.objects.filter(pk__in=[alice.device_id, bob.device_id]).update(last_active_at=None)
    assert services.relay_devices_seen(device_ids=[str(alice.device_id), str(bob.device_id)]) == 2
    assert Device.objects.filter(pk__in=[alice.device_id, bob.device_id], last_active_at__isnull=False).count() == 2


def test_a_device_seen_within_the_interval_is_not_written_again(family, alice, settings):
    settings.DEVICE_LAST_ACTIVE_INTERVAL_SECONDS = 60
    Device.objects.filter(pk=alice.device_id).update(last_active_at=timezone.now() - timedelta(seconds=5))
    assert services.relay_devices_seen(device_ids=[str(alice.device_id)]) == 0


@pytest.mark.anyio
async def test_many_closes_at_once_are_one_write():
    with mock.patch.object(services, "relay_devices_seen", return_value=0) as write:
        for number in range(1000):
            last_seen.last_seen_add(f"device-{number % 300}")
        await asyncio.sleep(last_seen.BATCH_SECONDS * 3)
    write.assert_called_once()
    assert len(write.call_args.kwargs["device_ids"]) == 300
