"""Creating a book with its first device, and listing a book's devices."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from apps.pairing.models import Book, Device
from homepocket_client import DeviceKey, device_token_mint

BOOKS = "/api/v1/books"


def create_book(client, persona, *, body=None, token=None, content_type="application/json"):
    body = body if body is not None else {
        "device_id": str(persona.device_id),
        "public_key": persona.key.public_key_b64,
        "device_name": persona.name,
    }
    payload = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(
        BOOKS,
        data=payload,
        content_type=content_type,
        HTTP_AUTHORIZATION=f"Bearer {token or persona.registration_token()}",
    )


def nothing_was_created() -> bool:
    return Book.objects.count() == 0 and Device.objects.count() == 0


@pytest.mark.django_db
class TestBookCreate:
    def test_it_creates_a_book_with_its_first_device(self, client, alice):
        response = create_book(client, alice)
        assert response.status_code == 201
        data = response.json()["data"]
        assert data["device_id"] == str(alice.device_id)
        device = Device.objects.get(pk=alice.device_id)
        assert str(device.book_id) == data["book_id"]
        assert bytes(device.public_key) == alice.key.public_key_bytes
        assert device.name == alice.name

    def test_a_retry_of_the_same_registration_returns_the_same_book(self, client, alice):
        first = create_book(client, alice).json()["data"]
        again = create_book(client, alice)
        assert again.status_code == 200
        assert again.json()["data"] == first
        assert Book.objects.count() == 1

    def test_it_refuses_another_device_id_with_a_registered_key(self, client, alice):
        create_book(client, alice)
        other_id = uuid.uuid4()
        body = {"device_id": str(other_id), "public_key": alice.key.public_key_b64, "device_name": "clone"}
        token = device_token_mint(alice.key, device_id=other_id)
        response = create_book(client, alice, body=body, token=token)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "DEVICE_ALREADY_REGISTERED"
        assert Book.objects.count() == 1

    def test_it_refuses_a_registered_device_id_with_another_key(self, client, alice):
        create_book(client, alice)
        new_key = DeviceKey.generate()
        body = {"device_id": str(alice.device_id), "public_key": new_key.public_key_b64, "device_name": "x"}
        response = create_book(client, alice, body=body, token=device_token_mint(new_key, device_id=alice.device_id))
        assert response.status_code == 409
        assert Book.objects.count() == 1

    def test_it_refuses_a_token_not_signed_by_the_body_key(self, client, alice, bob):
        response = create_book(client, alice, token=device_token_mint(bob.key, device_id=alice.device_id))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "INVALID_TOKEN"
        assert nothing_was_created()

    def test_it_refuses_a_token_whose_sub_is_not_the_device_id(self, client, alice):
        response = create_book(client, alice, token=device_token_mint(alice.key, device_id=uuid.uuid4()))
        assert response.json()["error"]["details"]["reason"] == "subject_mismatch"
        assert nothing_was_created()

    def test_it_refuses_a_token_with_a_book_id_claim(self, client, alice):
        token = device_token_mint(alice.key, device_id=alice.device_id, book_id=uuid.uuid4())
        response = create_book(client, alice, token=token)
        assert response.status_code == 401
        assert response.json()["error"]["details"]["reason"] == "unexpected_book_id"
        assert nothing_was_created()

    def test_it_refuses_a_request_without_a_token(self, client, alice):
        response = client.post(BOOKS, data={}, content_type="application/json")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "INVALID_TOKEN"

    @pytest.mark.parametrize(
        "field,value",
        [
            ("public_key", "not base64!!"),
            ("public_key", base64.b64encode(b"x" * 31).decode() + "A"),
            ("public_key", base64.b64encode(b"x" * 33).decode()),
            ("device_id", "not-a-uuid"),
            ("device_name", ""),
            ("device_name", "n" * 65),
            ("device_name", "tab\there"),
        ],
    )
    def test_it_refuses_invalid_fields_and_changes_nothing(self, client, alice, field, value):
        body = {"device_id": str(alice.device_id), "public_key": alice.key.public_key_b64, "device_name": "ok"}
        body[field] = value
        response = create_book(client, alice, body=body)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "INVALID_ARGUMENT"
        assert field in error["details"]["fields"]
        assert nothing_was_created()

    def test_it_refuses_malformed_json_and_changes_nothing(self, client, alice):
        response = create_book(client, alice, body='{"device_id": ')
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
        assert nothing_was_created()

    def test_it_refuses_a_body_that_is_not_json_and_changes_nothing(self, client, alice):
        response = create_book(client, alice, body="device_id=1", content_type="application/x-www-form-urlencoded")
        assert response.status_code == 415
        assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
        assert nothing_was_created()


@pytest.mark.django_db
class TestDeviceList:
    def test_it_lists_the_active_devices_with_the_current_one_marked(self, client, family, alice, bob):
        response = client.get(f"/api/v1/books/{family.id}/devices", **bob.auth())
        assert response.status_code == 200
        data = response.json()["data"]
        assert data["total_count"] == 2
        by_id = {d["device_id"]: d for d in data["devices"]}
        assert by_id[str(alice.device_id)]["public_key"] == alice.key.public_key_b64
        assert by_id[str(alice.device_id)]["device_name"] == alice.name
        assert by_id[str(alice.device_id)]["is_current"] is False
        assert by_id[str(bob.device_id)]["is_current"] is True
        assert set(by_id[str(bob.device_id)]) == {"device_id", "public_key", "device_name", "last_active_at", "is_current"}

    def test_it_leaves_revoked_devices_out(self, client, family, alice, bob):
        from apps.pairing.services import devices_revoke

        devices_revoke(device_ids=[bob.device_id])
        data = client.get(f"/api/v1/books/{family.id}/devices", **alice.auth()).json()["data"]
        assert data["total_count"] == 1
        assert data["devices"][0]["device_id"] == str(alice.device_id)


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_registrations_make_one_book(alice):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection
    from django.test import Client

    def register(_):
        try:
            return create_book(Client(), alice).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(register, range(8)))
    assert statuses == [200] * 7 + [201]
    assert Book.objects.count() == 1
    assert Device.objects.count() == 1
