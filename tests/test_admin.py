"""Operators find books and devices in the admin and can revoke a device."""

from __future__ import annotations

import pytest

from apps.pairing.models import Device


@pytest.fixture
def operator(admin_client):
    return admin_client


@pytest.mark.django_db
def test_the_device_list_searches_by_device_id(operator, family, alice, bob):
    response = operator.get("/admin/pairing/device/", {"q": str(bob.device_id)})
    assert response.status_code == 200
    assert str(bob.device_id) in response.content.decode()
    assert str(alice.device_id) not in response.content.decode()


@pytest.mark.django_db
def test_the_device_list_filters_revoked_devices(operator, family, alice, bob):
    operator.post("/admin/pairing/device/", {"action": "revoke_selected", "_selected_action": [str(bob.device_id)]})
    page = operator.get("/admin/pairing/device/", {"state": "revoked"}).content.decode()
    assert str(bob.device_id) in page and str(alice.device_id) not in page


@pytest.mark.django_db
def test_the_revoke_action_revokes_and_the_token_is_refused(operator, client, family, alice, bob):
    response = operator.post(
        "/admin/pairing/device/", {"action": "revoke_selected", "_selected_action": [str(bob.device_id)]}, follow=True
    )
    assert "Revoked 1 device" in response.content.decode()
    assert Device.objects.get(pk=bob.device_id).revoked_at is not None
    assert Device.objects.get(pk=alice.device_id).revoked_at is None
    refused = client.get(f"/api/v1/books/{family.id}/devices", **bob.auth())
    assert refused.json()["error"]["code"] == "INVALID_TOKEN"


@pytest.mark.django_db
def test_the_book_page_shows_its_devices_keys_as_base64(operator, family, alice):
    page = operator.get(f"/admin/pairing/book/{family.id}/change/").content.decode()
    assert alice.key.public_key_b64 in page


@pytest.mark.django_db
def test_devices_cannot_be_added_by_hand(operator):
    assert operator.get("/admin/pairing/device/add/").status_code == 403
