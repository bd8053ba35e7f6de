"""Revoking a device's or an API key's earlier tokens (tokens_valid_after): refused with INVALID_TOKEN
reason token_revoked, audited, from the admin and the command (docs/api.md, docs/cluster.md)."""

from __future__ import annotations

import io
import time
from datetime import datetime, timezone

import pytest
from django.core.management import CommandError, call_command

from apps.audit.models import AuditEvent, EventType
from apps.pairing import services
from apps.pairing.models import Device
from apps.quotas.models import ApiKey
from apps.quotas.services import api_key_create, api_key_rotate, api_keys_revoke
from apps.relay.services import relay_socket_authenticate, relay_ticket_issue
from apps.pairing.device_tokens import TokenRefused, device_token_verify


def devices_url(persona) -> str:
    return f"/api/v1/books/{persona.book_id}/devices"


def refusal(response) -> dict:
    assert response.status_code == 401, response.content
    error = response.json()["error"]
    assert error["code"] == "INVALID_TOKEN"
    return error["details"]


def test_the_cut_off_is_the_bump_rounded_up_to_the_next_whole_second():
    at = datetime(2026, 11, 24, 12, 0, 0, 400_000, tzinfo=timezone.utc)
    assert services.tokens_valid_after_next(at) == datetime(2026, 11, 24, 12, 0, 1, tzinfo=timezone.utc)
    whole = datetime(2026, 11, 24, 12, 0, 5, tzinfo=timezone.utc)
    assert services.tokens_valid_after_next(whole) == whole


@pytest.mark.django_db
class TestDeviceTokens:
    def test_a_token_issued_before_the_bump_is_refused_with_token_revoked(self, client, family, alice, bob):
        old = bob.book_token()
        assert client.get(devices_url(bob), **bob.auth(old)).status_code == 200
        services.device_tokens_revoke(device_ids=[bob.device_id])
        details = refusal(client.get(devices_url(bob), **bob.auth(old)))
        valid_after = Device.objects.get(pk=bob.device_id).tokens_valid_after
        assert details == {"reason": "token_revoked", "valid_after": int(valid_after.timestamp())}

    def test_a_token_issued_from_the_cut_off_on_is_accepted(self, client, family, alice, bob):
        services.device_tokens_revoke(device_ids=[bob.device_id])
        valid_after = Device.objects.get(pk=bob.device_id).tokens_valid_after.timestamp()
        assert client.get(devices_url(bob), **bob.auth(bob.book_token(now=valid_after))).status_code == 200

    def test_other_devices_of_the_book_are_untouched(self, client, family, alice, bob):
        services.device_tokens_revoke(device_ids=[bob.device_id])
        assert client.get(devices_url(alice), **alice.auth(alice.book_token(now=time.time() - 5))).status_code == 200

    def test_the_device_stays_paired(self, family, bob):
        services.device_tokens_revoke(device_ids=[bob.device_id])
        assert Device.objects.get(pk=bob.device_id).revoked_at is None

    def test_a_second_bump_never_moves_the_cut_off_back(self, family, bob):
        later = datetime(2100, 1, 1, tzinfo=timezone.utc)
        Device.objects.filter(pk=bob.device_id).update(tokens_valid_after=later)
        services.device_tokens_revoke(device_ids=[bob.device_id])
        assert Device.objects.get(pk=bob.device_id).tokens_valid_after == later

    def test_a_revoked_device_is_not_counted(self, family, alice, bob):
        services.devices_revoke(device_ids=[bob.device_id])
        assert services.device_tokens_revoke(device_ids=[bob.device_id, alice.device_id]) == 1

    def test_a_browser_ticket_issued_before_the_bump_is_refused(self, family, bob):
        ticket, _ = relay_ticket_issue(principal=device_token_verify(bob.book_token()))
        services.device_tokens_revoke(device_ids=[bob.device_id])
        with pytest.raises(TokenRefused) as refused:
            relay_socket_authenticate(book_id=str(bob.book_id), authorization=None, subprotocols=[f"ticket.{ticket}"])
        assert refused.value.details["reason"] == "token_revoked"

    def test_the_bump_is_audited_with_the_device_hashed(self, family, bob, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            services.device_tokens_revoke(device_ids=[bob.device_id])
        event = AuditEvent.objects.get(event_type=EventType.DEVICE_TOKENS_REVOKED)
        assert event.target.startswith("device:") and str(bob.device_id) not in str(event.target)
        assert event.details["by"] == "command" and event.details["valid_after"] > 0

    def test_the_bump_tells_the_relay_to_close_the_devices_sockets(self, family, bob, django_capture_on_commit_callbacks, monkeypatch):
        told = []
        monkeypatch.setattr(services, "_devices_changed_announce", lambda ids, reason: told.append((ids, reason)))
        with django_capture_on_commit_callbacks(execute=True):
            services.device_tokens_revoke(device_ids=[bob.device_id])
        assert told == [([str(bob.device_id)], "tokens revoked")]

    def test_the_admin_action_signs_the_selected_devices_out(self, admin_client, admin_user, family, bob, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(
                "/admin/pairing/device/", {"action": "revoke_tokens_selected", "_selected_action": [str(bob.device_id)]}, follow=True
            )
        assert "Revoked the tokens of 1 device(s)" in response.content.decode()
        assert Device.objects.get(pk=bob.device_id).tokens_valid_after is not None
        assert AuditEvent.objects.get(event_type=EventType.DEVICE_TOKENS_REVOKED).details["admin_user_id"] == admin_user.pk

    def test_the_command_signs_a_device_out(self, family, bob):
        out = io.StringIO()
        call_command("revoke_tokens", "--device", str(bob.device_id), stdout=out)
        assert "tokens revoked for 1 of 1" in out.getvalue()
        assert Device.objects.get(pk=bob.device_id).tokens_valid_after is not None

    def test_the_command_refuses_a_malformed_id_and_changes_nothing(self, family, bob):
        with pytest.raises(CommandError):
            call_command("revoke_tokens", "--device", str(bob.device_id), "--device", "not-a-uuid", stdout=io.StringIO())
        assert Device.objects.get(pk=bob.device_id).tokens_valid_after is None


EVENTS = "/api/v1/audit/events"


@pytest.mark.django_db
class TestApiKeyRotation:
    def test_the_old_secret_is_refused_with_token_revoked_and_the_new_one_works(self, client):
        key, old = api_key_create(name="ops", scopes=["audit:read"])
        _, new = api_key_rotate(key_id=key.pk)
        assert refusal(client.get(EVENTS, HTTP_AUTHORIZATION=f"Api-Key {old}")) == {"reason": "token_revoked"}
        assert client.get(EVENTS, HTTP_AUTHORIZATION=f"Api-Key {new}").status_code == 200
        rotated = ApiKey.objects.get()
        assert rotated.pk == key.pk and rotated.tokens_valid_after is not None and rotated.scopes == ["audit:read"]

    def test_a_revoked_key_is_not_rotated(self):
        key, _ = api_key_create(name="ops")
        api_keys_revoke(key_ids=[key.pk])
        assert api_key_rotate(key_id=key.pk) is None

    def test_the_command_prints_the_new_secret_once_and_audits_without_it(self, django_capture_on_commit_callbacks):
        key, _ = api_key_create(name="ops", scopes=["audit:read"])
        out = io.StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("revoke_tokens", "--api-key", str(key.pk), stdout=out)
        new = out.getvalue().strip().splitlines()[-1]
        assert new.startswith(f"hp_{key.prefix}_")
        event = AuditEvent.objects.get(event_type=EventType.API_KEY_ROTATED)
        assert event.api_key_id == str(key.pk) and new.split("_", 2)[2] not in str(event.details)

    def test_the_admin_action_shows_the_new_secret_once(self, admin_client):
        key, old = api_key_create(name="ops", scopes=["audit:read"])
        response = admin_client.post("/admin/quotas/apikey/", {"action": "rotate_selected", "_selected_action": [str(key.pk)]}, follow=True)
        assert f"shown this once: hp_{key.prefix}_" in response.content.decode()
        assert ApiKey.objects.get().secret_hash != key.secret_hash
