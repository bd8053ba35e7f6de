"""API keys' requests per day, for the 30-day chart of their owners' account pages.

Every request made with a key is tallied in memory by the metrics middleware (homepocket/tally.py);
the dashboard's flusher (apps/ops/aggregates.py) hands the tallies here every OPS_FLUSH_SECONDS, and
one upsert per key and day adds them (`requests = requests + n`: processes never read-then-write).
"""

from __future__ import annotations

from datetime import date, timedelta

from django.db import connection, transaction

from apps.accounts.models import ApiKeyUsageDay
from apps.quotas.models import ApiKey

_UPSERT = (
    "INSERT INTO accounts_apikeyusageday (api_key_id, day, requests) VALUES (%s, %s, %s) "
    "ON CONFLICT (api_key_id, day) DO UPDATE SET requests = accounts_apikeyusageday.requests + excluded.requests"
)


def api_key_usage_add(counts: dict[tuple[int, str], int]) -> int:
    """Add tallied requests, {(Unix day, key id): n}; returns the rows touched (keys since deleted are dropped)."""
    key_field = ApiKeyUsageDay._meta.get_field("api_key")
    day_field = ApiKeyUsageDay._meta.get_field("day")
    existing = {str(pk) for pk in ApiKey.objects.filter(pk__in={key for _, key in counts}).values_list("pk", flat=True)}
    params = [
        (
            key_field.get_db_prep_value(key, connection),
            day_field.get_db_prep_value(date(1970, 1, 1) + timedelta(days=day), connection),
            n,
        )
        for (day, key), n in counts.items()
        if key in existing
    ]
    if params:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(_UPSERT, params)
    return len(params)


def api_key_usage_days(*, api_key_id, days: int, today: date) -> list[tuple[date, int]]:
    """The last `days` days up to today, each with its requests (0 when none)."""
    first = today - timedelta(days=days - 1)
    found = dict(ApiKeyUsageDay.objects.filter(api_key_id=api_key_id, day__gte=first).values_list("day", "requests"))
    return [(first + timedelta(days=i), found.get(first + timedelta(days=i), 0)) for i in range(days)]
