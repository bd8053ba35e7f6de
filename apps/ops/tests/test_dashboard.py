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
    assert "not built yet" in page  # backup schedules and alerts: said plainly
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
