"""The dashboard's panels as plain data: what each shows, read from the aggregates and the apps' tables.

Aggregates only: endpoint groups, states, counts, ages and percentiles. The one exception is the
failed share deliveries, which link to their admin page by the delivery's own id (no device or
book id is shown), because an operator's next step is on that page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncHour
from django.urls import reverse

from apps.cluster.heartbeat import nodes_live
from apps.ops.charts import Bar, bar_chart, count_text, ms_text
from apps.ops.selectors import GroupStats, Series, last_day, last_hour

HEALTHY_5XX_RATE = 0.01


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


@dataclass(frozen=True)
class GroupRow:
    group: str
    requests: int
    per_second: float
    error_rate: float
    client_errors: int
    p50: str
    p99: str


def _group_rows(stats: dict[str, GroupStats], seconds: float) -> list[GroupRow]:
    return [
        GroupRow(
            group=s.group, requests=s.requests, per_second=round(s.requests / seconds, 2),
            error_rate=round(100 * s.error_rate, 2), client_errors=s.client_errors,
            p50=ms_text(s.p(0.5)), p99=ms_text(s.p(0.99)),
        )
        for s in stats.values()
        if s.requests
    ]  # fmt: skip


def _five_minute_rows(series: Series) -> tuple[list[float], list[dict[str, int]]]:
    """The last hour's minutes summed by five: twelve bars a phone can show with their labels."""
    starts, rows = [], []
    for i in range(0, len(series.rows), 5):
        merged: dict[str, int] = {}
        for row in series.rows[i : i + 5]:
            for name, value in row.items():
                merged[name] = merged.get(name, 0) + value
        starts.append(series.starts()[i])
        rows.append(merged)
    return starts, rows


def _chart(title: str, starts: list[float], values: list[float], *, unit: str, chart_id: str, text=count_text):
    return bar_chart(title=title, bars=[Bar(s, v, text(v)) for s, v in zip(starts, values)], unit=unit, chart_id=chart_id)


def traffic_panel(*, now: float) -> dict:
    hour, day = last_hour(now=now), last_day(now=now)
    starts5, rows5 = _five_minute_rows(hour)
    seconds_this_hour = 60 * 59 + (now % 60)
    per_group = hour.per_group()
    five_minute_stats = [Series(hour.resolution, 0, [row]).per_group() for row in rows5]
    p99s = [
        max((s.p(0.99) or 0.0 for s in stats.values() if s.group not in ("probes", "static")), default=0.0)
        for stats in five_minute_stats
    ]
    last_minute = Series(hour.resolution, 0, hour.rows[-2:-1]).per_group()
    return {
        "groups": _group_rows(per_group, seconds_this_hour),
        "groups_day": _group_rows(day.per_group(), 23 * 3600 + (now % 3600)),
        "requests_last_minute": sum(s.requests for s in last_minute.values()),
        "errors_last_hour": sum(s.server_errors for s in per_group.values()),
        "requests_last_hour": sum(s.requests for s in per_group.values()),
        "chart_hour": _chart("Requests per 5 minutes, last hour", starts5,
                             [sum(v for k, v in row.items() if k.endswith("|n")) for row in rows5], unit="requests", chart_id="chart-requests-hour"),
        "chart_day": _chart("Requests per hour, last 24 hours", day.starts(), day.requests(), unit="requests", chart_id="chart-requests-day"),
        "chart_errors_day": _chart("5xx answers per hour, last 24 hours", day.starts(), day.server_errors(), unit="5xx answers", chart_id="chart-errors-day"),
        "chart_p99_hour": _chart("Slowest group's p99 per 5 minutes, last hour", starts5, [p * 1000 for p in p99s],
                                 unit="ms", chart_id="chart-p99-hour", text=lambda v: f"{v:.1f}" if v else "–"),
    }  # fmt: skip


def relay_panel(*, now: float, nodes) -> dict:
    hour, day = last_hour(now=now), last_day(now=now)
    starts5, rows5 = _five_minute_rows(hour)
    deliveries = hour.field("relay|deliveries")
    return {
        "sockets": sum(node.sockets for node in nodes),
        "deliveries_per_second": round(sum(deliveries[-6:-1]) / 300, 2),
        "deliveries_last_hour": sum(deliveries),
        "operations_last_hour": sum(hour.field("relay|operations")),
        "chart_hour": _chart("Relay deliveries per 5 minutes, last hour", starts5,
                             [row.get("relay|deliveries", 0) for row in rows5], unit="deliveries", chart_id="chart-relay-hour"),
        "chart_day": _chart("Relay deliveries per hour, last 24 hours", day.starts(), day.field("relay|deliveries"),
                            unit="deliveries", chart_id="chart-relay-day"),
    }  # fmt: skip


def signing_panel(*, now: float, nodes) -> dict:
    signing = last_hour(now=now).per_group().get("signing")
    return {
        "signatures_last_hour": signing.requests if signing else 0,
        "p50": ms_text(signing.p(0.5) if signing else None),
        "p99": ms_text(signing.p(0.99) if signing else None),
        "signer_states": sorted({(node.node, node.signer) for node in nodes}),
        "key_cache": _key_cache_states(nodes),
    }


def _key_cache_states(nodes) -> dict[str, int] | None:
    """Keys cached in the signers by state (warm, cool, invalid), summed over the signers the nodes report."""
    reported = [node.key_cache for node in nodes if getattr(node, "key_cache", None)]
    if not reported:
        return None
    totals: dict[str, int] = {}
    for states in reported:
        for state, count in states.items():
            totals[state] = totals.get(state, 0) + count
    return totals


def share_delivery_panel() -> dict:
    from apps.backups.delivery.models import DeliveryStatus, ShareDelivery

    counts = dict(ShareDelivery.objects.values_list("status").annotate(n=Count("id")).order_by())
    failed = ShareDelivery.objects.filter(status=DeliveryStatus.FAILED).order_by("-failed_at")[:20]
    return {
        "states": [(label, counts.get(value, 0)) for value, label in DeliveryStatus.choices],
        "failed": [
            {"url": reverse("admin:backups_sharedelivery_change", args=[d.pk]), "failed_at": d.failed_at,
             "reason": d.last_error or "—", "tries": d.retry_count}
            for d in failed
        ],  # fmt: skip
        "failed_total": counts.get(DeliveryStatus.FAILED, 0),
    }


def backups_panel(*, now: float) -> dict:
    """Server backups: the repository's completed snapshots, each schedule's last success and next
    run, and the open alerts (backups app's tables; a snapshot's file is written when it completes)."""
    from apps.backups.engine.models import BackupAlert, BackupSchedule
    from apps.backups.engine.scheduling import schedule_next_run

    snapshots = Path(settings.BACKUP_REPOSITORY_DIR) / "snapshots"
    finished = sorted((p.stat().st_mtime for p in snapshots.glob("*.snap")), reverse=True) if snapshots.is_dir() else []
    last = finished[0] if finished else None
    at_now = _at(now)
    schedules = []
    for schedule in BackupSchedule.objects.order_by("name"):
        success = schedule.last_success_at
        next_run = schedule_next_run(schedule, now=at_now) if schedule.enabled else None
        schedules.append({
            "name": schedule.name, "type": schedule.get_backup_type_display(), "crontab": schedule.crontab,
            "enabled": schedule.enabled, "url": reverse("admin:backups_backupschedule_change", args=[schedule.pk]),
            "last_success_at": success, "last_success_age": _age((at_now - success).total_seconds()) if success else None,
            "next_run": next_run, "overdue": bool(next_run and next_run < at_now),
        })  # fmt: skip
    open_alerts = BackupAlert.objects.filter(resolved_at__isnull=True)
    return {
        "repository": str(settings.BACKUP_REPOSITORY_DIR),
        "snapshots": len(finished),
        "last_success_at": _at(last) if last else None,
        "last_success_age": _age(now - last) if last else None,
        "in_last_day": sum(1 for at in finished if now - at < 86400),
        "schedules": schedules,
        "alerts_open": open_alerts.count(),
        "alerts": [
            {"kind": alert.kind, "message": alert.message, "created_at": alert.created_at,
             "url": reverse("admin:backups_backupalert_change", args=[alert.pk])}
            for alert in open_alerts.order_by("-created_at")[:10]
        ],  # fmt: skip
        "alerts_url": reverse("admin:backups_backupalert_changelist") + "?resolved_at__isempty=1",
    }


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def quotas_panel(*, now: float) -> dict:
    """Subjects past the warning share of a daily or monthly quota in the current window, per policy."""
    from apps.quotas.models import QuotaNotification

    today = _at(now).replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    rows = (
        QuotaNotification.objects.filter(window_start__gte=month)
        .values("scope", "plan", "window_start")
        .annotate(subjects=Count("id"))
        .order_by("scope", "plan", "-window_start")
    )
    current = [
        {**row, "window": "today" if row["window_start"] >= today else "this month"}
        for row in rows
        if row["window_start"] in (today, month)
    ]
    return {
        "ratio": round(100 * settings.QUOTA_WARNING_RATIO),
        "current": current,
        "subjects": sum(row["subjects"] for row in current),
        "admin_url": reverse("admin:quotas_quotanotification_changelist"),
    }


def audit_panel(*, now: float) -> dict:
    from apps.audit.models import AuditEvent

    first_hour = int(now) // 3600 - 23
    since = _at(first_hour * 3600)
    found = dict(
        AuditEvent.objects.filter(created_at__gte=since)
        .annotate(hour=TruncHour("created_at", tzinfo=timezone.utc))
        .values_list("hour")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_hour = {int(hour.timestamp()) // 3600: n for hour, n in found.items()}
    starts = [(first_hour + i) * 3600 for i in range(24)]
    values = [by_hour.get(first_hour + i, 0) for i in range(24)]
    return {
        "last_day": sum(values),
        "last_hour": values[-1],
        "chart_day": _chart("Audit events per hour, last 24 hours", starts, values, unit="events", chart_id="chart-audit-day"),
    }


def dashboard_panels() -> dict:
    now = time.time()
    nodes = nodes_live(now=now)
    return {
        "generated_at": _at(now),
        "nodes": [{"node": n, "started": _at(n.started_at), "seen_ago": round(now - n.seen_at, 1)} for n in nodes],
        "heartbeat_ttl": settings.HEARTBEAT_TTL_SECONDS,
        "traffic": traffic_panel(now=now),
        "relay": relay_panel(now=now, nodes=nodes),
        "signing": signing_panel(now=now, nodes=nodes),
        "deliveries": share_delivery_panel(),
        "backups": backups_panel(now=now),
        "quotas": quotas_panel(now=now),
        "audit": audit_panel(now=now),
        "healthy_5xx_rate": HEALTHY_5XX_RATE * 100,
    }

