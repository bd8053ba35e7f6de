"""Rate limits at the API: honest headers, 429 in the envelope, fail modes, usage, warnings, audit."""

from __future__ import annotations

import logging
import socket

import pytest
from prometheus_client import REGISTRY

from apps.audit.models import AuditEvent, EventType
from apps.quotas import limiter, services
from apps.quotas.models import Policy, QuotaNotification
from apps.quotas.policies import policies_forget

T0 = 1_795_000_000.0  # 2026-11-18, a fixed moment so windows are predictable


@pytest.fixture
def clock(monkeypatch):
    """The limiter's clock, moved by tests instead of sleeping."""

    class Clock:
        at = T0

        def advance(self, seconds: float) -> None:
            self.at += seconds

    moved = Clock()
    monkeypatch.setattr(limiter, "now", lambda: moved.at)
    return moved


def generate(client, persona):
    return client.post(
        "/api/v1/pairing/generate", {"book_id": str(persona.book_id)}, content_type="application/json", **persona.auth()
    )


def set_policy(scope, plan="free", **fields):
    Policy.objects.filter(scope=scope, plan=plan).update(**fields)
    policies_forget()


def metric(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_eleventh_pairing_code_within_an_hour_is_refused_with_429(client, family, alice, clock):
    for _ in range(10):
        assert generate(client, alice).status_code == 201
    clock.advance(1800)
    refused = generate(client, alice)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "RATE_LIMIT_EXCEEDED"
    assert error["details"] == {"policy": "pairing.generate", "limit": 10, "window": 3600, "retry_after": 1800}
    assert refused["Retry-After"] == "1800"
    assert refused["X-RateLimit-Limit"] == "10"
    assert refused["X-RateLimit-Remaining"] == "0"
    assert refused["X-RateLimit-Reset"] == str(int(T0 + 3600))


def test_pairing_codes_are_allowed_again_after_the_hour(client, family, alice, clock):
    for _ in range(10):
        generate(client, alice)
    assert generate(client, alice).status_code == 429
    clock.advance(3600)
    assert generate(client, alice).status_code == 201


def test_every_limited_response_says_what_is_left(client, family, alice, clock):
    remaining = [generate(client, alice)["X-RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["9", "8", "7"]
    response = generate(client, alice)
    assert response["X-RateLimit-Limit"] == "10"
    assert response["X-RateLimit-Reset"] == str(int(T0 + 3600))


def test_the_limit_counts_per_device(client, family, alice, bob, clock):
    for _ in range(10):
        generate(client, alice)
    assert generate(client, alice).status_code == 429
    assert generate(client, bob).status_code == 201


def test_verifies_are_limited_per_client_address(db, client, dave, clock, settings):
    # Pairing's own lockout after 5 failures would answer first; lift it to see the policy's cap
    # on all attempts from one address.
    settings.PAIRING_MAX_FAILURES = 1000
    body = {"short_code": "000000", "public_key": dave.key.public_key_b64, "device_name": dave.name}

    def verify(ip):
        return client.post(
            "/api/v1/pairing/verify", body, content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {dave.registration_token()}", REMOTE_ADDR=ip,
        )  # fmt: skip

    statuses = [verify("10.9.9.9").status_code for _ in range(31)]
    assert statuses[:30] == [400] * 30
    assert statuses[30] == 429
    assert verify("10.9.9.10").status_code == 400  # another address has its own count


@pytest.mark.django_db(transaction=False)
def test_a_quota_exceeded_event_is_audited_once_per_window_with_hashed_ids(
    client, family, alice, clock, django_capture_on_commit_callbacks
):
    for _ in range(10):
        generate(client, alice)
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            assert generate(client, alice).status_code == 429
    events = AuditEvent.objects.filter(event_type=EventType.QUOTA_EXCEEDED)
    assert events.count() == 1
    event = events.get()
    assert event.target == "policy:pairing.generate" and event.outcome == "failure"
    row = str(AuditEvent.objects.filter(pk=event.pk).values().get())
    assert str(alice.device_id) not in row and str(alice.book_id) not in row
    assert event.actor_device and event.book


def test_a_closed_policy_answers_503_when_the_store_is_unreachable(client, family, alice, settings, caplog):
    settings.RATELIMIT_REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    before = metric("homepocket_ratelimit_store_errors_total")
    with caplog.at_level(logging.WARNING, logger="apps.quotas.store_redis"):
        response = generate(client, alice)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "RETRY_LATER"
    assert response["Retry-After"] == "1"
    assert "rate-limit store unreachable" in caplog.text
    assert metric("homepocket_ratelimit_store_errors_total") == before + 1


def test_an_open_policy_lets_requests_through_when_the_store_is_unreachable(client, family, alice, settings):
    settings.RATELIMIT_REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    set_policy("pairing.generate", fail_mode="open")
    before = metric("homepocket_ratelimit_decisions_total", scope="pairing.generate", decision="fail_open")
    response = generate(client, alice)
    assert response.status_code == 201
    assert "X-RateLimit-Limit" not in response  # nothing was counted, so nothing is claimed
    assert metric("homepocket_ratelimit_decisions_total", scope="pairing.generate", decision="fail_open") == before + 1


def test_a_policy_change_applies_without_a_restart(client, family, alice, clock):
    set_policy("pairing.generate", limit=2)
    assert [generate(client, alice).status_code for _ in range(3)] == [201, 201, 429]
    set_policy("pairing.generate", limit=None)
    response = generate(client, alice)
    assert response.status_code == 201 and "X-RateLimit-Limit" not in response


def test_an_admin_edit_of_a_policy_is_audited_and_applies(admin_client, client, family, alice, django_capture_on_commit_callbacks):
    policy = Policy.objects.get(scope="pairing.generate", plan="free")
    form = {
        "scope": policy.scope, "plan": policy.plan, "subject": policy.subject, "limit": "1",
        "window": policy.window, "fail_mode": policy.fail_mode, "description": policy.description,
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/quotas/policy/{policy.pk}/change/", form)
    assert response.status_code == 302
    event = AuditEvent.objects.get(event_type=EventType.POLICY_CHANGED)
    assert event.target == "policy:pairing.generate:free" and event.details["changed"] == ["limit"]
    assert [generate(client, alice).status_code for _ in range(2)] == [201, 429]


def test_usage_lists_the_devices_and_books_quotas_and_consumes_nothing(client, family, alice, clock):
    generate(client, alice)
    for _ in range(2):
        response = client.get("/api/v1/usage", **alice.auth())
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["plan"] == "free"
    quotas = {q["policy"]: q for q in data["quotas"]}
    assert quotas["pairing.generate"] == {
        "policy": "pairing.generate", "subject": "device", "window": "hour", "limit": 10, "used": 1,
        "remaining": 9, "reset": int(T0 + 3600), "fail_mode": "closed",
    }  # fmt: skip
    assert quotas["photos.upload"]["limit"] == 100 and quotas["photos.upload"]["used"] == 0
    assert quotas["relay.send"]["subject"] == "book"
    assert "api_key.minute" not in quotas and "pairing.verify" not in quotas  # per address, not the caller's


def test_a_paid_book_sees_its_plans_limits(client, family, alice):
    family.plan = "paid"
    family.save()
    quotas = {q["policy"]: q for q in client.get("/api/v1/usage", **alice.auth()).json()["data"]["quotas"]}
    assert quotas["photos.upload"]["limit"] == 1000
    assert quotas["photos.download"]["limit"] is None and quotas["photos.download"]["used"] is None


def test_passing_eighty_percent_of_a_daily_quota_makes_one_notification(client, family, alice, clock):
    set_policy("photos.upload", limit=10)
    subjects = services.QuotaSubjects(device_id=alice.device_id, book_id=alice.book_id, plan="free")
    for _ in range(10):
        services.quota_consume(scopes=["photos.upload"], subjects=subjects)
    notification = QuotaNotification.objects.get()
    assert (notification.scope, notification.subject, notification.used, notification.limit) == (
        "photos.upload", f"book:{alice.book_id}", 8, 10,
    )  # fmt: skip
    shown = client.get("/api/v1/usage", **alice.auth()).json()["data"]["notifications"]
    assert [(n["policy"], n["used"], n["limit"]) for n in shown] == [("photos.upload", 8, 10)]
    clock.advance(86400)  # the next day: a new window, a new warning when it passes 80% again
    for _ in range(8):
        services.quota_consume(scopes=["photos.upload"], subjects=subjects)
    assert QuotaNotification.objects.count() == 2


def test_operators_filter_the_subjects_near_their_quota_in_the_admin(admin_client, family, alice, clock):
    set_policy("photos.upload", limit=5)
    subjects = services.QuotaSubjects(book_id=alice.book_id, plan="free")
    for _ in range(4):
        services.quota_consume(scopes=["photos.upload"], subjects=subjects)
    page = admin_client.get("/admin/quotas/quotanotification/?scope=photos.upload")
    assert page.status_code == 200
    assert f"book:{alice.book_id}" in page.content.decode()


class TestApiKeyQuotas:
    def audit(self, client, clear):
        return client.get("/api/v1/audit/events", HTTP_AUTHORIZATION=f"Api-Key {clear}")

    def test_a_keys_own_requests_per_minute_apply(self, db, client, clock):
        _, clear = services.api_key_create(name="ops", scopes=["audit:read"], rpm=2)
        statuses = [self.audit(client, clear).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        clock.advance(60)
        assert self.audit(client, clear).status_code == 200

    def test_a_keys_daily_quota_applies_beside_its_minute_rate(self, db, client, clock):
        _, clear = services.api_key_create(name="ops", scopes=["audit:read"], rpm=100, daily=2)
        responses = [self.audit(client, clear) for _ in range(3)]
        assert [r.status_code for r in responses] == [200, 200, 429]
        assert responses[2].json()["error"]["details"]["policy"] == "api_key.day"
        assert responses[1]["X-RateLimit-Limit"] == "2"  # the limit closest to refusing

    def test_usage_for_an_api_key_lists_its_quotas(self, db, client, clock):
        _, clear = services.api_key_create(name="ops", scopes=["audit:read"], rpm=5, monthly=1000)
        self.audit(client, clear)
        data = client.get("/api/v1/usage", HTTP_AUTHORIZATION=f"Api-Key {clear}").json()["data"]
        quotas = {q["policy"]: q for q in data["quotas"]}
        assert data["plan"] == "service"
        assert set(quotas) == {"api_key.minute", "api_key.day", "api_key.month"}
        assert (quotas["api_key.minute"]["limit"], quotas["api_key.minute"]["used"]) == (5, 1)
        assert quotas["api_key.day"]["limit"] is None
        assert quotas["api_key.month"]["remaining"] == 999

    def test_staff_sessions_are_not_counted(self, admin_client, clock):
        for _ in range(3):
            response = admin_client.get("/api/v1/audit/events")
        assert response.status_code == 200 and "X-RateLimit-Limit" not in response


class TestSettingsChecks:
    def test_a_cluster_without_a_shared_store_refuses_to_start(self):
        from apps.quotas.checks import shared_store_errors

        assert [m.id for m in shared_store_errors(engine="django.db.backends.postgresql", url=None)] == ["quotas.E002"]
        assert shared_store_errors(engine="django.db.backends.postgresql", url="redis://127.0.0.1:6379/0") == []
        assert shared_store_errors(engine="django.db.backends.sqlite3", url=None) == []

    @pytest.mark.parametrize(
        "name, value, error",
        [("RATELIMIT_REDIS_URL", "http://127.0.0.1:6379", "quotas.E001"), ("RATELIMIT_POLICY_TTL", 60, "quotas.E003"),
         ("QUOTA_WARNING_RATIO", 1.5, "quotas.E004"), ("RATELIMIT_STORE_TIMEOUT", 0, "quotas.E005")],
    )  # fmt: skip
    def test_bad_limiter_settings_fail_the_check(self, settings, name, value, error):
        from apps.quotas.checks import check_rate_limit_settings

        setattr(settings, name, value)
        assert error in {m.id for m in check_rate_limit_settings(None)}

    def test_the_current_limiter_settings_pass(self):
        from apps.quotas.checks import check_rate_limit_settings

        assert check_rate_limit_settings(None) == []
