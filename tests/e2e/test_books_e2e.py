"""A real server process, the client library, real sockets: create a book and list its devices."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from homepocket_client import DeviceIdentity, InvalidArgument, InvalidToken, UnsupportedRequest

pytestmark = pytest.mark.e2e


def test_a_device_creates_a_book_and_lists_its_devices(api):
    alice = DeviceIdentity.new("alice's phone")
    created = api.create_book(alice)
    assert created.created is True
    assert alice.book_id == created.book_id
    listing = api.list_devices(alice)
    assert listing.total_count == 1
    (device,) = listing.devices
    assert device.device_id == alice.device_id
    assert device.public_key == alice.key.public_key_bytes
    assert device.device_name == "alice's phone"
    assert device.is_current is True
    assert device.last_active_at is not None


def test_a_token_signed_by_another_key_raises_invalid_token(api):
    alice = DeviceIdentity.new("alice")
    api.create_book(alice)
    impostor = DeviceIdentity(key=DeviceIdentity.new("x").key, device_id=alice.device_id, book_id=alice.book_id)
    with pytest.raises(InvalidToken) as refused:
        api.list_devices(impostor)
    assert refused.value.code == "INVALID_TOKEN"
    assert refused.value.status == 401
    assert refused.value.request_id


def registration_body(identity: DeviceIdentity, **overrides) -> dict:
    return {"device_id": str(identity.device_id), "public_key": identity.key.public_key_b64, "device_name": identity.name, **overrides}


def post_registration(base_url: str, identity: DeviceIdentity, content: bytes | str, content_type="application/json"):
    """A raw POST /books with a valid registration token: the body is what the test makes it."""
    return httpx.post(
        f"{base_url}/api/v1/books",
        content=content,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {identity.registration_token()}"},
        timeout=10,
    )


def assert_refused_and_nothing_created(api, identity, response, status: int, code: str) -> None:
    assert response.status_code == status
    envelope = response.json()
    assert envelope["error"]["code"] == code
    assert envelope["meta"]["request_id"] == response.headers["X-Request-ID"]
    # Nothing was created: the same registration now creates the book (201, not a 200 retry).
    assert api.create_book(identity).created is True


def test_a_2_mib_body_is_refused_and_creates_nothing(live, api):
    alice = DeviceIdentity.new("alice")
    body = json.dumps(registration_body(alice, padding="x" * (2 * 1024 * 1024)))
    response = post_registration(live.url, alice, body)
    assert_refused_and_nothing_created(api, alice, response, 413, "PAYLOAD_TOO_LARGE")


def test_malformed_json_is_refused_and_creates_nothing(live, api):
    alice = DeviceIdentity.new("alice")
    response = post_registration(live.url, alice, b'{"device_id": "' + str(alice.device_id).encode() + b'", ')
    assert_refused_and_nothing_created(api, alice, response, 400, "INVALID_ARGUMENT")


def test_a_missing_body_raises_invalid_argument_in_the_client(api):
    alice = DeviceIdentity.new("alice")
    with pytest.raises(InvalidArgument) as refused:
        api.request("POST", "/api/v1/books", identity=alice, registration=True, headers={"Content-Type": "application/json"})
    assert set(refused.value.details["fields"]) == {"device_id", "public_key", "device_name"}


def test_a_wrong_content_type_is_refused_and_creates_nothing(live, api):
    alice = DeviceIdentity.new("alice")
    response = post_registration(live.url, alice, json.dumps(registration_body(alice)), content_type="text/plain")
    assert_refused_and_nothing_created(api, alice, response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_an_unknown_device_is_refused(api):
    stranger = DeviceIdentity.new("stranger")
    stranger.book_id = uuid.uuid4()
    with pytest.raises(InvalidToken):
        api.list_devices(stranger)


def test_a_wrong_method_raises_unsupported_request(api):
    with pytest.raises(UnsupportedRequest) as refused:
        api.request("DELETE", "/api/v1/books")
    assert (refused.value.code, refused.value.status) == ("METHOD_NOT_ALLOWED", 405)


def test_the_server_log_holds_no_token_key_or_body(live, api):
    marker = "body-marker-never-logged"
    alice = DeviceIdentity.new(marker)
    api.create_book(alice)
    token = alice.book_token()
    httpx.get(f"{live.url}/api/v1/books/{alice.book_id}/devices?token={token}", headers={"Authorization": f"Bearer {token}"})
    httpx.post(f"{live.url}/api/v1/books", content=b"{" + marker.encode(), headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    log = live.log_text()
    assert '"logger": "homepocket.access"' in log
    assert token not in log
    assert alice.key.public_key_b64 not in log
    assert marker not in log
    assert str(alice.book_id) not in log  # routes are logged as templates, not paths
