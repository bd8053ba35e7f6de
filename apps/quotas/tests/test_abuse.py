"""Abuse signals per API key and device: rate spikes and many addresses raise one flag, a metric and
an audit event; with the policy on, a flagged key is suspended until an operator lifts it.

Both modes: the distributed suite runs these against Redis (REDIS_URL set by the harness), the
embedded one against this process's memory. Requests go through the real middleware; time moves
through the flush's `at` (a tally is filed under the minute it is flushed in).
"""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from prometheus_client import REGISTRY

from apps.audit.models import AuditEvent, EventType
from apps.quotas import abuse, services
from apps.quotas.checks import abuse_settings_errors
from apps.quotas.models import AbuseFlag, ApiKey, Plan
from homepocket.tally import subjects_take

EVENTS = "/api/v1/audit/events"
T0 = 1_795_000_020.0  # a fixed moment, 20 s into a minute: each step of 60 s is the next minute


@pytest.fixture(autouse=True)
def _abuse_signals_of_this_test_only(settings):
    """Its own key namespace (and so a fresh store), small thresholds, nothing tallied before it."""
    settings.ABUSE_KEY_PREFIX = f"{settings.CACHE_KEY_PREFIX}:abuse-test-{uuid.uuid4().hex[:8]}"
    settings.ABUSE_RATE_FLOOR = 4
    settings.ABUSE_RATE_FACTOR = 3.0
    settings.ABUSE_BASELINE_MIN_MINUTES = 3
    settings.ABUSE_BASELINE_WEIGHT = 0.5
    settings.ABUSE_IP_LIMIT = 3
    settings.ABUSE_IP_WINDOW_MINUTES = 5
    settings.ABUSE_SUSPEND_API_KEYS = False
    subjects_take()
    yield
    subjects_take()


@pytest.fixture
def key(db):
    return services.api_key_create(name="billing service", scopes=["audit:read"], rpm=1000)


@pytest.fixture
def flushed(django_capture_on_commit_callbacks):
    """abuse_flush with the transaction's on-commit work (audit, announcements) run, as in production."""

    def flush(at: float):
        with django_capture_on_commit_callbacks(execute=True):
            return abuse.abuse_flush(at=at)

    return flush


def call(client, clear: str, times: int = 1, **meta):
    responses = [client.get(EVENTS, HTTP_AUTHORIZATION=f"Api-Key {clear}", **meta) for _ in range(times)]
    return responses[-1]


def flags_metric(signal: str, subject: str) -> float:
    return REGISTRY.get_sample_value("homepocket_abuse_flags_total", {"signal": signal, "subject": subject}) or 0.0


def steady_minutes(client, clear: str, flushed, minutes: int, per_minute: int = 6) -> float:
    """`minutes` minutes of the same rate, each flushed; returns the moment of the last flush."""
    at = T0
    for minute in range(minutes):
        at = T0 + 60 * minute
        call(client, clear, per_minute)
        flushed(at)
    return at


def test_a_steady_key_raises_no_flag(client, key, flushed):
    steady_minutes(client, key[1], flushed, minutes=6)
    assert not AbuseFlag.objects.exists()


def test_a_spike_far_above_the_usual_rate_raises_exactly_one_flag_a_metric_and_an_audit_event(client, key, flushed):
    api_key, clear = key
    at = steady_minutes(client, clear, flushed, minutes=3)  # a usual rate of 6 a minute: the threshold is 18
    before = flags_metric("rate_spike", "api_key")
    call(client, clear, 25)
    raised = flushed(at + 60)
    call(client, clear, 10)
    flushed(at + 75)  # the same spike, seen again within the minute
    flushed(at + 120)  # and folded when its minute ends

    assert [flag.signal for flag in raised] == ["rate_spike"]
    flag = AbuseFlag.objects.get()
    assert (flag.subject_kind, flag.subject_id, flag.signal, flag.action) == ("api_key", str(api_key.pk), "rate_spike", "")
    assert flag.observed["requests"] == 25 and flag.observed["threshold"] == 18.0
    assert flags_metric("rate_spike", "api_key") == before + 1
    event = AuditEvent.objects.get(event_type=EventType.ABUSE_FLAGGED)
    assert (event.api_key_id, event.details["signal"]) == (str(api_key.pk), "rate_spike")
    assert ApiKey.objects.get().suspended_at is None  # the policy is off: flagged only


def test_a_new_key_without_a_usual_rate_is_not_judged_for_spikes(client, key, flushed):
    call(client, key[1], 40)
    flushed(T0)
    flushed(T0 + 60)
    assert not AbuseFlag.objects.exists()


def test_many_client_addresses_within_the_window_raise_a_flag_and_store_no_address(client, key, flushed, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]  # nginx's address: X-Forwarded-For names the client
    api_key, clear = key
    for address in ("203.0.113.7", "203.0.113.8"):
        call(client, clear, HTTP_X_FORWARDED_FOR=address)
    assert flushed(T0) == []  # two addresses: not many
    for address in ("198.51.100.20", "198.51.100.21"):
        call(client, clear, HTTP_X_FORWARDED_FOR=address)
    before = flags_metric("many_ips", "api_key")
    raised = flushed(T0 + 60)  # four within the 5-minute window

    assert [(flag.signal, flag.subject_id) for flag in raised] == [("many_ips", str(api_key.pk))]
    assert raised[0].observed["distinct_ips"] > 3 and raised[0].observed["window_minutes"] == 5
    assert flags_metric("many_ips", "api_key") == before + 1
    stored = str(list(AbuseFlag.objects.values())) + str(list(AuditEvent.objects.values()))
    assert "203.0.113" not in stored and "198.51.100" not in stored


def test_a_device_with_many_addresses_is_flagged_but_never_suspended(client, family, alice, flushed, settings):
    settings.ABUSE_SUSPEND_API_KEYS = True
    devices = f"/api/v1/books/{alice.book_id}/devices"
    for octet in range(1, 6):
        assert client.get(devices, REMOTE_ADDR=f"192.0.2.{octet}", **alice.auth()).status_code == 200
    raised = flushed(T0)

    assert [(flag.subject_kind, flag.subject_id, flag.signal, flag.action) for flag in raised] == [
        ("device", str(alice.device_id), "many_ips", "")
    ]
    assert AuditEvent.objects.filter(event_type=EventType.ABUSE_FLAGGED).count() == 1
    assert client.get(devices, **alice.auth()).status_code == 200


def many_addresses(client, clear: str, flushed, at: float = T0) -> list[AbuseFlag]:
    for octet in range(1, 6):
        call(client, clear, REMOTE_ADDR=f"192.0.2.{octet}")
    return flushed(at)


def test_with_suspension_on_a_flagged_key_is_refused_with_api_key_suspended(client, key, flushed, settings):
    settings.ABUSE_SUSPEND_API_KEYS = True
    api_key, clear = key
    (flag,) = many_addresses(client, clear, flushed)
    assert flag.action == "suspended"
    assert AuditEvent.objects.filter(event_type=EventType.API_KEY_SUSPENDED, api_key_id=str(api_key.pk)).count() == 1

    response = call(client, clear)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "API_KEY_SUSPENDED"


def test_the_refusal_of_a_suspended_key_changes_nothing(client, key, flushed, settings):
    settings.ABUSE_SUSPEND_API_KEYS = True
    api_key, clear = key
    many_addresses(client, clear, flushed)
    row = ApiKey.objects.values().get()
    subjects = services.QuotaSubjects(api_key=ApiKey.objects.get(), plan=Plan.SERVICE)
    used = [(usage.scope, usage.used) for usage in services.quota_usage(subjects=subjects)]
    events = AuditEvent.objects.count()

    assert call(client, clear, 3).status_code == 403

    assert ApiKey.objects.values().get() == row  # last_used_at included
    assert [(usage.scope, usage.used) for usage in services.quota_usage(subjects=subjects)] == used
    assert AuditEvent.objects.count() == events
    assert subjects_take() == {}  # refused before it was the key's: not counted for the signals either


def test_lifting_the_suspension_in_the_admin_restores_the_key(client, admin_client, admin_user, key, flushed, settings, django_capture_on_commit_callbacks):
    settings.ABUSE_SUSPEND_API_KEYS = True
    api_key, clear = key
    many_addresses(client, clear, flushed)
    assert call(client, clear).status_code == 403

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/quotas/apikey/", {"action": "lift_suspension_selected", "_selected_action": [str(api_key.pk)]}, follow=True
        )
    assert response.status_code == 200

    assert call(client, clear).status_code == 200
    assert ApiKey.objects.get().suspended_at is None
    assert AbuseFlag.objects.get().resolved_at is not None
    lifted = AuditEvent.objects.get(event_type=EventType.API_KEY_SUSPENSION_LIFTED)
    assert lifted.details["admin_user_id"] == admin_user.pk


def test_operators_filter_and_resolve_flags_in_the_admin_and_a_new_pattern_flags_again(
    client, admin_client, key, flushed, django_capture_on_commit_callbacks
):
    api_key, clear = key
    now = (time.time() // 60) * 60 + 1  # the resolution happens now: these minutes are real ones
    (flag,) = many_addresses(client, clear, flushed, at=now)

    listed = admin_client.get("/admin/quotas/abuseflag/", {"signal": "many_ips", "resolved_at__isempty": "1"})
    assert listed.status_code == 200 and str(api_key.pk) in listed.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/quotas/abuseflag/", {"action": "resolve_selected", "_selected_action": [str(flag.pk)]})
    assert AbuseFlag.objects.get().resolved_at is not None
    assert AuditEvent.objects.filter(event_type=EventType.ABUSE_RESOLVED).count() == 1

    assert len(many_addresses(client, clear, flushed, at=now + 120)) == 1  # many again after it: a new open flag
    assert AbuseFlag.objects.filter(resolved_at__isnull=True).count() == 1


def test_a_lifted_key_is_not_suspended_again_on_the_evidence_already_decided(client, key, flushed, settings):
    settings.ABUSE_SUSPEND_API_KEYS = True
    api_key, clear = key
    now = (time.time() // 60) * 60 + 1  # the lift happens now: these minutes are real ones
    many_addresses(client, clear, flushed, at=now)
    abuse.api_keys_suspension_lift(key_ids=[api_key.pk])

    assert call(client, clear, 2, REMOTE_ADDR="192.0.2.1").status_code == 200
    assert flushed(now + 1) == []  # the window still holds the five addresses seen before the lift
    assert call(client, clear).status_code == 200
    assert flushed(now + 61) == []
    for octet in range(20, 25):  # new addresses after the lift: a new decision
        call(client, clear, REMOTE_ADDR=f"192.0.2.{octet}")
    assert [flag.action for flag in flushed(now + 121)] == ["suspended"]


def test_resolving_a_flag_with_lift_restores_the_key_it_suspended(client, admin_client, key, flushed, settings, django_capture_on_commit_callbacks):
    settings.ABUSE_SUSPEND_API_KEYS = True
    _, clear = key
    (flag,) = many_addresses(client, clear, flushed)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/quotas/abuseflag/", {"action": "resolve_and_lift_selected", "_selected_action": [str(flag.pk)]})
    assert call(client, clear).status_code == 200


def test_an_unreachable_store_drops_the_counts_and_requests_are_served(client, key, settings):
    assert call(client, key[1], 5, REMOTE_ADDR="192.0.2.9").status_code == 200
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    before = REGISTRY.get_sample_value("homepocket_abuse_store_errors_total") or 0.0
    assert abuse.abuse_flush(at=T0) == []
    assert REGISTRY.get_sample_value("homepocket_abuse_store_errors_total") == before + 1
    assert subjects_take() == {}  # dropped, never filed late as a spike


@pytest.mark.parametrize(
    "name, value",
    [("ABUSE_RATE_FACTOR", 1.0), ("ABUSE_BASELINE_WEIGHT", 0.0), ("ABUSE_IP_LIMIT", 0), ("ABUSE_IP_LIMIT", 256), ("ABUSE_FLUSH_SECONDS", 0)],
)
def test_bad_abuse_settings_fail_the_check(settings, name, value):
    setattr(settings, name, value)
    assert [error.id for error in abuse_settings_errors()] == ["quotas.E006"]


def test_the_default_abuse_settings_pass(settings):
    from homepocket import settings as defaults

    for name in dir(defaults):
        if name.startswith("ABUSE_"):
            setattr(settings, name, getattr(defaults, name))
    assert abuse_settings_errors() == []


@pytest.mark.django_db(transaction=True)
def test_the_sign_path_refuses_a_key_as_soon_as_it_is_suspended(settings):
    """The sign route trusts a verified key from memory: a suspension reaches it through the broadcast."""
    from asgiref.sync import async_to_sync

    from apps.signing import callers
    from homepocket.redis_clients import broadcast

    settings.ABUSE_SUSPEND_API_KEYS = True
    assert broadcast.wait_listening()
    callers.callers_forget()
    api_key, clear = services.api_key_create(name="wallet service", scopes=["signing"])
    assert async_to_sync(callers.caller_verify)(clear).api_key_id == api_key.pk

    flag = abuse.abuse_flag_raise(subject=f"api_key:{api_key.pk}", signal="many_ips", observed={"distinct_ips": 40})
    assert flag.action == "suspended"
    deadline = time.monotonic() + 10  # a generous bound: the broadcast takes milliseconds
    while True:
        try:
            async_to_sync(callers.caller_verify)(clear)
        except services.ApiKeySuspended as refused:
            assert (refused.status, refused.code) == (403, "API_KEY_SUSPENDED")
            break
        assert time.monotonic() < deadline, "the suspension never reached the sign path's memory"
        time.sleep(0.01)


def test_the_store_is_redis_in_the_distributed_mode_and_memory_in_the_embedded_one(settings):
    from apps.quotas.abuse_store import MemoryAbuseStore, RedisAbuseStore

    expected = RedisAbuseStore if settings.REDIS_URL else MemoryAbuseStore
    assert isinstance(abuse.abuse_store(), expected)


def test_the_database_keeps_one_open_flag_per_subject_and_signal_whoever_races(db):
    from django.db import IntegrityError, transaction

    fields = {"subject_kind": "device", "subject_id": str(uuid.uuid4()), "signal": "rate_spike"}
    AbuseFlag.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        AbuseFlag.objects.create(**fields)  # a second node's insert for the same pattern
    AbuseFlag.objects.update(resolved_at="2026-11-24T00:00:00Z")
    AbuseFlag.objects.create(**fields)  # resolved: a new pattern may open a new one
    assert AbuseFlag.objects.filter(resolved_at__isnull=True).count() == 1
