"""Hot configuration in one process: maintenance mode at the edge, log level, switches, the admin,
the command, the audit trail, and policy edits announced (docs/cluster.md, "Hot configuration")."""

from __future__ import annotations

import io
import logging

import pytest
from django.core.management import CommandError, call_command

from apps.audit.models import AuditEvent, EventType
from apps.cluster import hot_config, services
from apps.cluster.models import FeatureSwitch, RuntimeConfig

# Committed rows: the node's hot-configuration thread reads them on its own connection.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _defaults_applied_after_each_test(settings):
    yield
    hot_config.hot_config_apply(hot_config.HotConfig())
    logging.getLogger().setLevel(settings.LOG_LEVEL)


def maintenance_on(**extra):
    services.runtime_config_update(changes={"maintenance": True, **extra})


def test_maintenance_refuses_a_change_with_503_maintenance_and_retry_after(client):
    maintenance_on(maintenance_message="Upgrading the database", maintenance_retry_after=120)
    response = client.post("/api/v1/books", {}, content_type="application/json")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "MAINTENANCE"
    assert error["details"] == {"retry_after": 120, "message": "Upgrading the database"}
    assert response["Retry-After"] == "120"
    assert response["X-Request-ID"]


def test_maintenance_serves_reads_health_and_the_paths_that_change_no_record(client, family, alice):
    maintenance_on()
    assert client.get(f"/api/v1/books/{alice.book_id}/devices", **alice.auth()).status_code == 200
    assert client.get("/health").status_code == 200
    ticket = client.post("/api/v1/relay/ticket", **alice.auth())
    assert ticket.status_code == 201, ticket.content


def test_maintenance_off_lets_changes_through_again(client):
    maintenance_on()
    services.runtime_config_update(changes={"maintenance": False})
    assert client.post("/api/v1/books", {}, content_type="application/json").json()["error"]["code"] == "INVALID_TOKEN"


def test_the_admin_stays_usable_during_maintenance(admin_client):
    maintenance_on()
    page = admin_client.post("/admin/cluster/runtimeconfig/1/change/", {
        "log_level": "", "maintenance_message": "", "maintenance_retry_after": "300",
    }, follow=True)  # fmt: skip
    assert page.status_code == 200 and "was changed successfully" in page.content.decode()
    assert RuntimeConfig.objects.get().maintenance is False
    assert hot_config.hot_config().maintenance is False  # this node applied it at once


def test_a_change_bumps_the_version_and_is_audited(admin_user):
    before = RuntimeConfig.objects.get().version
    services.runtime_config_update(changes={"log_level": "WARNING"}, admin_user_id=admin_user.pk)
    assert RuntimeConfig.objects.get().version == before + 1
    event = AuditEvent.objects.get(event_type=EventType.CONFIG_CHANGED)
    assert event.target == "config:runtime"
    assert event.details == {"changed": ["log_level"], "log_level": "WARNING", "admin_user_id": admin_user.pk}


def test_an_unknown_field_or_a_bad_value_changes_nothing():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValueError):
        services.runtime_config_update(changes={"version": 99})
    with pytest.raises(ValidationError):
        services.runtime_config_update(changes={"log_level": "LOUD"})
    assert RuntimeConfig.objects.get().version == 0 and not AuditEvent.objects.filter(event_type=EventType.CONFIG_CHANGED).exists()


def test_the_log_level_applies_to_the_root_logger_and_default_restores_the_environments(settings):
    services.runtime_config_update(changes={"log_level": "ERROR"})
    assert logging.getLogger().level == logging.ERROR
    services.runtime_config_update(changes={"log_level": ""})
    assert logging.getLevelName(logging.getLogger().level) == settings.LOG_LEVEL


def test_a_switch_is_on_everywhere_code_asks_and_a_missing_one_answers_its_default():
    assert hot_config.switch_enabled("photos.thumbnails") is False
    assert hot_config.switch_enabled("photos.thumbnails", default=True) is True
    services.feature_switch_set(name="photos.thumbnails", enabled=True)
    assert hot_config.switch_enabled("photos.thumbnails") is True
    services.feature_switch_delete(name="photos.thumbnails")
    assert hot_config.switch_enabled("photos.thumbnails", default=True) is True


def test_a_switch_name_must_be_lower_case_words():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.feature_switch_set(name="Bad Name", enabled=True)
    assert not FeatureSwitch.objects.exists()


def test_the_command_shows_sets_and_switches():
    out = io.StringIO()
    call_command("hotconfig", "set", "--maintenance", "on", "--message", "back soon", "--log-level", "WARNING", stdout=out)
    assert "maintenance on, log level WARNING" in out.getvalue()
    call_command("hotconfig", "switch", "relay.backlog", "on", stdout=out)
    assert hot_config.hot_config().switches == {"relay.backlog": True}
    with pytest.raises(CommandError):
        call_command("hotconfig", "set", stdout=out)
    with pytest.raises(CommandError):
        call_command("hotconfig", "switch", "no.such", "delete", stdout=out)


def test_a_node_reads_the_configuration_from_the_database_at_start():
    RuntimeConfig.objects.filter(pk=1).update(maintenance=True, version=41)  # changed while this node was down
    hot_config.hot_config_apply(hot_config.HotConfig())
    assert hot_config.hot_config_refresh().maintenance is True and hot_config.hot_config().version == 41


def test_a_policy_edit_is_announced_so_every_node_drops_its_copy(monkeypatch):
    from apps.quotas import policies
    from apps.quotas.models import Policy
    from apps.quotas.services import policy_update
    from homepocket.redis_clients import broadcast

    assert broadcast.wait_listening(10)
    policies.policy_rule("pairing.generate", "free")
    dropped = []
    monkeypatch.setattr(policies, "policies_forget", lambda: dropped.append(1))
    policy, _ = Policy.objects.get_or_create(
        scope="pairing.generate", plan="free", defaults={"subject": "device", "limit": 10, "window": "hour", "fail_mode": "closed"}
    )
    policy.limit = 3
    policy_update(policy=policy, changed_fields=["limit"])
    # The broadcast's handler runs policies_forget (the service also calls it for this node first).
    import time

    deadline = time.monotonic() + 10
    while len(dropped) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
