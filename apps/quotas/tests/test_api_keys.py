"""API keys: shown once, stored hashed, scoped, revocable; used by the audit query API."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from apps.quotas import services
from apps.quotas.models import ApiKey

EVENTS = "/api/v1/audit/events"


def api_key_header(clear: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Api-Key {clear}"}


@pytest.mark.django_db
class TestApiKeys:
    def test_the_command_prints_the_key_once_and_stores_only_its_hash(self):
        out = io.StringIO()
        call_command("apikey", "create", "--name", "ops tool", "--scope", "audit:read", "--rpm", "60", stdout=out)
        clear = out.getvalue().strip().splitlines()[-1]
        assert clear.startswith("hp_")
        key = ApiKey.objects.get()
        assert (key.name, key.scopes, key.rpm) == ("ops tool", ["audit:read"], 60)
        secret = clear.split("_", 2)[2]
        assert secret not in str(ApiKey.objects.values().get())

    def test_a_scoped_key_reads_the_audit_trail(self, client):
        _, clear = services.api_key_create(name="ops", scopes=["audit:read"])
        response = client.get(EVENTS, **api_key_header(clear))
        assert response.status_code == 200
        assert ApiKey.objects.get().last_used_at is not None

    def test_a_key_without_the_scope_is_forbidden(self, client):
        _, clear = services.api_key_create(name="signer", scopes=["signing"])
        response = client.get(EVENTS, **api_key_header(clear))
        assert (response.status_code, response.json()["error"]["code"]) == (403, "FORBIDDEN")

    @pytest.mark.parametrize("presented", ["nonsense", "hp_deadbeef0000_wrong", "hp_"])
    def test_an_unknown_or_malformed_key_is_refused(self, client, presented):
        services.api_key_create(name="ops", scopes=["audit:read"])
        response = client.get(EVENTS, **api_key_header(presented))
        assert (response.status_code, response.json()["error"]["code"]) == (401, "INVALID_TOKEN")

    def test_a_right_prefix_with_a_wrong_secret_is_refused(self, client):
        _, clear = services.api_key_create(name="ops", scopes=["audit:read"])
        response = client.get(EVENTS, **api_key_header(clear[:-4] + "AAAA"))
        assert response.status_code == 401

    def test_a_revoked_key_is_refused(self, client):
        key, clear = services.api_key_create(name="ops", scopes=["audit:read"])
        call_command("apikey", "revoke", str(key.pk), stdout=io.StringIO())
        response = client.get(EVENTS, **api_key_header(clear))
        assert response.json()["error"]["details"]["reason"] == "revoked"

    def test_device_endpoints_do_not_take_api_keys(self, client, family):
        _, clear = services.api_key_create(name="ops", scopes=["audit:read"])
        response = client.get(f"/api/v1/books/{family.id}/devices", **api_key_header(clear))
        assert (response.status_code, response.json()["error"]["code"]) == (401, "INVALID_TOKEN")

    def test_the_admin_creates_a_key_and_shows_it_once(self, admin_client):
        response = admin_client.post(
            "/admin/quotas/apikey/add/", {"name": "from admin", "scopes": '["audit:read"]'}, follow=True
        )
        page = response.content.decode()
        assert "shown this once: hp_" in page
        key = ApiKey.objects.get(name="from admin")
        assert key.prefix and key.secret_hash and key.scopes == ["audit:read"]


@pytest.mark.django_db
def test_creating_and_revoking_a_key_are_audited_without_the_secret(admin_client, admin_user, django_capture_on_commit_callbacks):
    from apps.audit.models import AuditEvent, EventType

    with django_capture_on_commit_callbacks(execute=True):
        key, clear = services.api_key_create(name="ops", scopes=["audit:read"], rpm=60)
        admin_client.post(
            "/admin/quotas/apikey/", {"action": "revoke_selected", "_selected_action": [str(key.pk)]}
        )
    created = AuditEvent.objects.get(event_type=EventType.API_KEY_CREATED)
    revoked = AuditEvent.objects.get(event_type=EventType.API_KEY_REVOKED)
    assert created.api_key_id == revoked.api_key_id == str(key.pk)
    assert revoked.details == {"by": "admin", "admin_user_id": admin_user.pk}
    assert clear.split("_", 2)[2] not in str(list(AuditEvent.objects.values()))
