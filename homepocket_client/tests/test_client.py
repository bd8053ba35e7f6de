from __future__ import annotations

import json
import uuid

import httpx
import jwt
import pytest

from homepocket_client import BookCreated, DeviceIdentity, DeviceInfo, HomePocketClient, TransportError
from homepocket_client.tests.fake_server import FAMILY_BOOK_ID, envelope_success

NEW_BOOK_ID = uuid.UUID("33333333-3333-4333-8333-333333333333")


def _bearer_claims(request: httpx.Request, identity: DeviceIdentity) -> dict:
    scheme, _, token = request.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    return jwt.decode(token, identity.key.public_key, algorithms=["EdDSA"])


def _device_wire(identity: DeviceIdentity, *, is_current: bool, last_active_at: str | None) -> dict:
    return {
        "device_id": str(identity.device_id),
        "public_key": identity.key.public_key_b64,
        "device_name": identity.name,
        "last_active_at": last_active_at,
        "is_current": is_current,
    }


def test_it_creates_a_book_with_the_device_id_key_and_name(client, server, bob):
    server.reply(201, envelope_success({"book_id": str(NEW_BOOK_ID), "device_id": str(bob.device_id)}))

    client.create_book(bob)

    request = server.last
    assert (request.method, request.url.path) == ("POST", "/api/v1/books")
    assert json.loads(request.content) == {
        "device_id": str(bob.device_id),
        "public_key": bob.key.public_key_b64,
        "device_name": "Bob's phone",
    }


def test_it_creates_a_book_with_a_registration_token(client, server, bob):
    server.reply(201, envelope_success({"book_id": str(NEW_BOOK_ID), "device_id": str(bob.device_id)}))

    client.create_book(bob)

    claims = _bearer_claims(server.last, bob)
    assert claims["sub"] == str(bob.device_id)
    assert "book_id" not in claims
    assert 0 < claims["exp"] - claims["iat"] <= 24 * 3600


def test_it_records_the_new_book_on_the_identity(client, server, bob):
    server.reply(201, envelope_success({"book_id": str(NEW_BOOK_ID), "device_id": str(bob.device_id)}))

    result = client.create_book(bob)

    assert result == BookCreated(book_id=NEW_BOOK_ID, device_id=bob.device_id, created=True)
    assert bob.book_id == NEW_BOOK_ID


def test_it_reports_an_idempotent_retry_as_not_created(client, server, bob):
    server.reply(200, envelope_success({"book_id": str(NEW_BOOK_ID), "device_id": str(bob.device_id)}))

    assert client.create_book(bob).created is False


def test_it_lists_the_devices_of_the_book_with_a_book_token(client, server, alice, bob):
    server.reply(
        200,
        envelope_success(
            {
                "devices": [
                    _device_wire(alice, is_current=True, last_active_at="2025-01-01T10:00:00.123456Z"),
                    _device_wire(bob, is_current=False, last_active_at=None),
                ],
                "total_count": 2,
            }
        ),
    )

    devices = client.list_devices(alice)

    assert server.last.url.path == f"/api/v1/books/{FAMILY_BOOK_ID}/devices"
    claims = _bearer_claims(server.last, alice)
    assert (claims["sub"], claims["book_id"]) == (str(alice.device_id), str(FAMILY_BOOK_ID))
    assert devices.total_count == 2
    first, second = devices.devices
    assert isinstance(first, DeviceInfo)
    assert (first.device_id, first.public_key, first.is_current) == (alice.device_id, alice.key.public_key_bytes, True)
    assert first.last_active_at is not None and first.last_active_at.year == 2025
    assert (second.device_name, second.last_active_at) == ("Bob's phone", None)
    assert second.public_key_b64 == bob.key.public_key_b64


def test_it_lists_another_book_when_asked_with_the_devices_own_token(client, server, alice):
    other_book = uuid.uuid4()
    server.reply(200, envelope_success({"devices": [], "total_count": 0}))

    client.list_devices(alice, book_id=other_book)

    assert server.last.url.path == f"/api/v1/books/{other_book}/devices"
    assert _bearer_claims(server.last, alice)["book_id"] == str(FAMILY_BOOK_ID)


def test_it_refuses_to_list_devices_of_a_device_without_a_book(client, server, bob):
    with pytest.raises(ValueError, match="no book"):
        client.list_devices(bob)

    assert server.requests == []


def test_it_mints_a_fresh_token_for_every_request(client, server, alice):
    client.request("GET", "/api/v1/anything", identity=alice)
    client.request("GET", "/api/v1/anything", identity=alice)

    first, second = (request.headers["Authorization"] for request in server.requests)
    assert _bearer_claims(server.requests[0], alice)["sub"] == str(alice.device_id)
    assert first.startswith("Bearer ") and second.startswith("Bearer ")


def test_it_sends_no_token_without_an_identity(client, server):
    client.request("GET", "/api/v1/public")

    assert "Authorization" not in server.last.headers


def test_it_sends_its_own_request_id(client, server):
    client.request("GET", "/api/v1/public")
    client.request("GET", "/api/v1/public")

    first, second = (request.headers["X-Request-ID"] for request in server.requests)
    assert first != second and len(first) == 32


def test_it_lets_headers_replace_the_token(client, server, alice):
    client.request("GET", "/api/v1/anything", identity=alice, headers={"authorization": "Bearer forged"})

    assert server.last.headers.get_list("Authorization") == ["Bearer forged"]


def test_it_returns_the_data_of_the_envelope(client, server):
    server.reply(200, envelope_success({"answer": 42}))

    assert client.request("POST", "/api/v1/echo", json={"question": "?"}) == {"answer": 42}
    assert json.loads(server.last.content) == {"question": "?"}


def test_it_returns_status_and_headers_with_the_envelope(client, server):
    server.reply(201, envelope_success(None), headers={"X-RateLimit-Remaining": "9"})

    envelope = client.request_envelope("POST", "/api/v1/things")

    assert (envelope.status, envelope.request_id, envelope.data) == (201, "srv-request-0001", None)
    assert envelope.headers["X-RateLimit-Remaining"] == "9"


def test_it_keeps_the_path_prefix_of_the_base_url(server):
    with HomePocketClient("http://proxy.test/homepocket", transport=httpx.MockTransport(server)) as client:
        client.request("GET", "/api/v1/books")

    assert server.last.url.path == "/homepocket/api/v1/books"


def test_it_does_not_follow_redirects(client, server):
    server.reply_raw(httpx.Response(302, headers={"Location": "http://elsewhere.test/"}))

    with pytest.raises(TransportError):
        client.request("GET", "/api/v1/books")

    assert len(server.requests) == 1


def test_it_refuses_a_registration_request_without_an_identity(client):
    with pytest.raises(ValueError, match="identity"):
        client.request("POST", "/api/v1/books", registration=True)
