"""What an account page shows: the user's own keys, their quotas and usage, nothing of anyone else's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from django.db.models import Sum

from apps.accounts.models import ApiKeyOwner, ApiKeyUsageDay
from apps.accounts.usage import api_key_usage_days
from apps.ops.charts import Bar, bar_chart, count_text
from apps.quotas.models import Plan, Window
from apps.quotas.services import QuotaSubjects, RateLimitStoreDown, quota_notifications, quota_usage

CHART_DAYS = 30


@dataclass(frozen=True)
class UsageBar:
    label: str  # "today", "this month"
    used: int
    limit: int | None

    @property
    def percent(self) -> int | None:
        return None if not self.limit else min(100, round(100 * self.used / self.limit))

    @property
    def text(self) -> str:
        if self.limit is None:
            return f"{self.used:,} requests {self.label} (no quota)"
        return f"{self.used:,} of {self.limit:,} requests {self.label} ({self.percent} %)"


def _bars(key, subjects: QuotaSubjects, today: date) -> tuple[list[UsageBar], bool]:
    tallied_today = ApiKeyUsageDay.objects.filter(api_key=key, day=today).values_list("requests", flat=True).first() or 0
    tallied_month = ApiKeyUsageDay.objects.filter(api_key=key, day__gte=today.replace(day=1)).aggregate(n=Sum("requests"))["n"] or 0
    try:
        counted = {row.window: row for row in quota_usage(subjects=subjects) if row.limit is not None}
        store_up = True
    except RateLimitStoreDown:
        counted, store_up = {}, False
    bars = []
    for window, label, tallied in ((Window.DAY, "today", tallied_today), (Window.MONTH, "this month", tallied_month)):
        row = counted.get(window)
        # A limited window's count is the limiter's own (what the quota is checked against).
        bars.append(UsageBar(label, row.used if row else tallied, row.limit if row else None))
    return bars, store_up


def account_keys(*, user, now: datetime) -> list[dict]:
    """Each key the user owns and that is not revoked: plan, usage against quotas, warnings, 30 days."""
    today = now.astimezone(timezone.utc).date()
    owners = (
        ApiKeyOwner.objects.filter(user=user, api_key__revoked_at__isnull=True)
        .select_related("api_key", "replaced_by")
        .order_by("-api_key__created_at")
    )
    keys = []
    for owner in owners:
        key = owner.api_key
        subjects = QuotaSubjects(api_key=key, plan=Plan.SERVICE)
        bars, store_up = _bars(key, subjects, today)
        days = api_key_usage_days(api_key_id=key.pk, days=CHART_DAYS, today=today)
        chart = bar_chart(
            title=f"Requests per day with {key.name}, last {CHART_DAYS} days (UTC)",
            bars=[Bar(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp(), n, count_text(n)) for d, n in days],
            unit="requests", chart_id=f"chart-key-{key.prefix}", days=True,
        )  # fmt: skip
        keys.append({
            "key": key, "owner": owner, "plan": Plan.SERVICE.label, "bars": bars, "store_up": store_up,
            "notifications": quota_notifications(subjects=subjects, since=now - timedelta(days=31)),
            "chart": chart, "rpm": key.rpm,
        })  # fmt: skip
    return keys
