"""An API key's requests per day: tallied in memory, added by the flush with one upsert per key and day."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest

from apps.accounts.models import ApiKeyUsageDay
from apps.accounts.usage import api_key_usage_add, api_key_usage_days
from apps.ops.aggregates import Flusher
from apps.quotas.services import api_key_create
from homepocket import metrics
from homepocket.tally import tallies_take

pytestmark = pytest.mark.django_db


class _Memory:
    def add(self, fields, at):
        pass


def test_a_keys_requests_reach_its_day_row_through_the_flush():
    key, _ = api_key_create(name="shop")
    tallies_take()
    for _ in range(3):
        metrics.request_observe(method="GET", route="/api/v1/usage", status=200, seconds=0.01, api_key_id=key.pk)
    Flusher(store=_Memory()).flush()
    Flusher(store=_Memory()).flush()  # nothing more: nothing added twice
    today = date(1970, 1, 1) + timedelta(days=int(time.time()) // 86400)
    assert ApiKeyUsageDay.objects.get(api_key=key, day=today).requests == 3


def test_two_processes_add_to_one_row():
    key, _ = api_key_create(name="shop")
    day = 20_000
    api_key_usage_add({(day, str(key.pk)): 5})
    api_key_usage_add({(day, str(key.pk)): 7})
    assert ApiKeyUsageDay.objects.get(api_key=key).requests == 12


def test_a_deleted_keys_tally_is_dropped():
    assert api_key_usage_add({(20_000, "00000000-0000-0000-0000-000000000000"): 5}) == 0


def test_the_last_days_come_with_zeros_for_quiet_days():
    key, _ = api_key_create(name="shop")
    today = date(2026, 11, 24)
    ApiKeyUsageDay.objects.create(api_key=key, day=today - timedelta(days=2), requests=4)
    days = api_key_usage_days(api_key_id=key.pk, days=3, today=today)
    assert days == [(today - timedelta(days=2), 4), (today - timedelta(days=1), 0), (today, 0)]
