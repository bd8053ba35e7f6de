"""/ops/: staff only, read-only, every panel rendered (with or without data), aggregates only."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apps.ops.aggregates import Flusher, aggregates_store
from homepocket import metrics
from homepocket.tally import tallies_take

pytestmark = pytest.mark.django_db

PANELS = ["panel-nodes", "panel-traffic", "panel-relay", "panel-signing", "panel-deliveries", "panel-backups", "panel-quotas", "panel-audit"]


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_user("operator", password="pw-operator-1", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def isolated_store(settings):
    if settings.REDIS_URL:
        import secrets

        import redis

        settings.CACHE_KEY_PREFIX = f"{settings.CACHE_KEY_PREFIX}:dash-{secrets.token_hex(4)}"
        yield
        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(f"{settings.CACHE_KEY_PREFIX}:*"):
            client.delete(key)
    else:
        yield


def test_anonymous_visitors_are_sent_to_the_admin_login(client):
    answer = client.get("/ops/")
    assert answer.status_code == 302
    assert answer["Location"].startswith("/admin/login/")


def test_a_user_who_is_not_staff_gets_no_dashboard(client):
    user = get_user_model().objects.create_user("holder", password="pw-holder-1")
    client.force_login(user)
    answer = client.get("/ops/", follow=True)
    assert b"panel-traffic" not in answer.content
    assert answer.redirect_chain[0][0].startswith("/admin/login/")


def test_the_dashboard_is_read_only(staff_client):
    assert staff_client.post("/ops/").status_code == 405


def test_every_panel_shows_on_an_empty_service(staff_client, isolated_store):
    page = staff_client.get("/ops/").content.decode()
    for panel in PANELS:
        assert f'id="{panel}"' in page
    assert "No request in the last hour." in page
    assert "No backup has completed" in page
    assert "No backup schedule" in page and "No open alert." in page  # said plainly
    assert "The signers do not report" in page  # no heartbeat carries key-cache states
    assert '<meta http-equiv="refresh" content="10">' in page


def test_traffic_shows_per_group_with_percentiles_and_labelled_bars(staff_client, isolated_store):
    tallies_take()
    for status in [200] * 9 + [500]:
        metrics.request_observe(method="POST", route="/api/v1/signing/sign", status=status, seconds=0.004)
    Flusher(store=aggregates_store()).flush()
    page = staff_client.get("/ops/").content.decode()
    assert 'data-group="signing"' in page
    assert "10.0 %" in page  # one 5xx in ten
    assert 'id="chart-requests-hour"' in page and 'id="chart-requests-day"' in page
    assert 'class="value"' in page and "data-time=" in page  # every bar carries its value and its time


def test_the_backups_panel_shows_each_schedule_with_its_last_success_and_next_run_and_the_open_alerts(staff_client, isolated_store):
    from datetime import timedelta

    from django.utils import timezone

    from apps.backups.engine.models import AlertKind, BackupAlert, BackupSchedule
    from apps.backups.engine.scheduling import backup_schedule_save

    now = timezone.now()
    hourly = backup_schedule_save(schedule=BackupSchedule(name="db-hourly", backup_type="database", crontab="0 * * * *"))
    # Its run of this hour started on time (a start before the top of the hour would leave that
    # hour's run overdue) and succeeded a second later.
    started = now.replace(minute=0, second=0, microsecond=0)
    success = started + timedelta(seconds=1)
    BackupSchedule.objects.filter(pk=hourly.pk).update(last_started_at=started, last_success_at=success)
    # Created two days ago and never run: its daily run is overdue.
    late = backup_schedule_save(schedule=BackupSchedule(name="objects-daily", backup_type="objects", crontab="30 2 * * *"))
    BackupSchedule.objects.filter(pk=late.pk).update(created_at=now - timedelta(days=2))
    BackupAlert.objects.create(kind=AlertKind.BACKUP_DELAYED, schedule=late, message="schedule objects-daily: the run due has not started")
    BackupAlert.objects.create(kind=AlertKind.BACKUP_FAILED, message="an old failure", resolved_at=now)

    page = staff_client.get("/ops/").content.decode()
    hourly_row = page[page.index('data-schedule="db-hourly"'):page.index('data-schedule="objects-daily"')]
    assert f'datetime="{success.isoformat()}"' in hourly_row and " ago" in hourly_row
    assert "never" not in hourly_row and "overdue" not in hourly_row
    next_hour = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    assert f'datetime="{next_hour.isoformat()}"' in hourly_row  # the next run: the top of the next hour
    late_row = page[page.index('data-schedule="objects-daily"'):]
    assert "never" in late_row and "overdue" in late_row
    assert '<b id="backup-alerts-open">1</b>' in page  # the resolved one is not open
    assert "BACKUP_DELAYED" in page and "an old failure" not in page
    assert "/admin/backups/backupalert/" in page and "/admin/backups/backupschedule/" in page


def test_the_signing_panel_shows_the_key_cache_states_the_heartbeats_carry(staff_client, isolated_store, settings, tmp_path):
    import time

    from apps.cluster.heartbeat import Heartbeat, heartbeat_store

    if not settings.REDIS_URL:
        settings.VAR_DIR = tmp_path
    now = time.time()
    for node, warm in (("node-a", 3), ("node-b", 2)):
        heartbeat_store().write(Heartbeat(
            node=node, pid=1, version="1", started_at=now, seen_at=now, expires_at=now + 30, sockets=0,
            requests_per_second=0, signer="up", key_cache={"warm": warm, "cool": 1, "invalid": 0},
        ))  # fmt: skip
    page = staff_client.get("/ops/").content.decode()
    table = page[page.index('id="key-cache"'):]
    table = table[: table.index("</table>")]
    assert "<th>warm</th><td class=\"num\">5 keys</td>" in table  # summed over the nodes
    assert "<th>cool</th><td class=\"num\">2 keys</td>" in table
