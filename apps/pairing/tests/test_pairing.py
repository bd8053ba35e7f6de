"""Pairing: a new phone joins a book with a 6-digit code, safely, exactly once."""

from __future__ import annotations

import itertools
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client, override_settings

from apps.pairing import codes
from apps.pairing.models import Device
from homepocket_client import DeviceIdentity

_ips = itertools.count(1)


@pytest.fixture
def ip() -> str:
    """A client address of this test's own, so failure counters never leak between tests."""
    n = next(_ips)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def generate(client, persona, book_id=None):
    return client.post(
        "/api/v1/pairing/generate", {"book_id": str(book_id or persona.book_id)}, content_type="application/json", **persona.auth()
    )


def verify(client, joiner, code, ip="10.0.0.1"):
    body = {"short_code": code, "public_key": joiner.key.public_key_b64, "device_name": joiner.name}
    return client.post(
        "/api/v1/pairing/verify", body, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {joiner.registration_token()}", REMOTE_ADDR=ip,
    )  # fmt: skip


def exchange(client, persona, code, wait=0):
    return client.post(f"/api/v1/pairing/exchange?wait={wait}", {"short_code": code}, content_type="application/json", **persona.auth())


def code_of(client, persona) -> str:
    response = generate(client, persona)
    assert response.status_code == 201, response.content
    return response.json()["data"]["short_code"]


def error_code(response) -> str:
    return response.json()["error"]["code"]


@pytest.fixture
def clock(monkeypatch):
    """Moves the pairing clock instead of sleeping."""

    class Clock:
        offset = 0.0

        def advance(self, seconds: float) -> None:
            self.offset += seconds

    clock = Clock()
    real = codes.now
    monkeypatch.setattr(codes, "now", lambda: real() + clock.offset)
    return clock


@pytest.mark.django_db
class TestFlow:
    def test_a_code_is_six_digits_live_five_minutes(self, client, family, alice):
        data = generate(client, alice).json()["data"]
        assert len(data["short_code"]) == 6 and data["short_code"].isdigit()
        assert data["ttl_seconds"] == 300

    def test_the_joiner_learns_the_initiators_key_and_joins_the_book(self, client, family, alice, dave, ip):
        code = code_of(client, alice)
        response = verify(client, dave, code, ip)
        assert response.status_code == 200, response.content
        data = response.json()["data"]
        assert data == {
            "matched": True,
            "peer_public_key": alice.key.public_key_b64,
            "peer_device_id": str(alice.device_id),
            "book_id": str(family.id),
            "device_id": str(dave.device_id),
        }
        dave.book_id = family.id
        listing = client.get(f"/api/v1/books/{family.id}/devices", **dave.auth()).json()["data"]
        assert str(dave.device_id) in {d["device_id"] for d in listing["devices"]}

    def test_the_initiator_waits_then_gets_the_joiners_key_once(self, client, family, alice, dave, ip):
        code = code_of(client, alice)
        assert exchange(client, alice, code).json()["data"] == {"status": "waiting"}
        verify(client, dave, code, ip)
        data = exchange(client, alice, code).json()["data"]
        assert data == {"status": "completed", "peer_public_key": dave.key.public_key_b64, "peer_device_id": str(dave.device_id)}
        assert error_code(exchange(client, alice, code)) == "INVALID_SHORT_CODE"

    def test_a_wait_over_30_seconds_is_refused(self, client, family, alice):
        code = code_of(client, alice)
        assert error_code(exchange(client, alice, code, wait=31)) == "INVALID_ARGUMENT"

    def test_another_device_cannot_exchange_the_code(self, client, family, alice, bob):
        code = code_of(client, alice)
        assert error_code(exchange(client, bob, code)) == "INVALID_SHORT_CODE"

    def test_a_second_verify_with_the_same_code_fails(self, client, family, alice, dave, ip):
        code = code_of(client, alice)
        assert verify(client, dave, code, ip).status_code == 200
        eve = DeviceIdentity.new("eve")
        response = verify(client, eve, code, ip)
        assert response.status_code == 400
        assert error_code(response) == "INVALID_SHORT_CODE"
        assert not Device.objects.filter(pk=eve.device_id).exists()

    def test_a_code_for_another_book_is_refused(self, client, family, neighbours, alice):
        response = generate(client, alice, book_id=neighbours.id)
        assert response.status_code == 403

    def test_a_revoked_initiator_code_no_longer_works(self, client, family, alice, bob, dave, ip):
        code = code_of(client, bob)
        client.delete(f"/api/v1/books/{family.id}/devices/{bob.device_id}", **alice.auth())
        assert error_code(verify(client, dave, code, ip)) == "INVALID_SHORT_CODE"


@pytest.mark.django_db
class TestRefusalsChangeNothing:
    def test_an_unknown_code_is_invalid(self, client, family, dave, ip):
        response = verify(client, dave, "12345x", ip)
        assert error_code(response) == "INVALID_SHORT_CODE"
        assert not Device.objects.filter(pk=dave.device_id).exists()

    def test_an_expired_code_says_so(self, client, family, alice, dave, ip, clock):
        code = code_of(client, alice)
        clock.advance(301)
        response = verify(client, dave, code, ip)
        assert response.status_code == 400
        assert error_code(response) == "SHORT_CODE_EXPIRED"
        assert error_code(exchange(client, alice, code)) == "SHORT_CODE_EXPIRED"

    def test_a_used_code_stays_invalid_not_expired_after_its_time(self, client, family, alice, dave, ip, clock):
        code = code_of(client, alice)
        verify(client, dave, code, ip)
        clock.advance(400)
        assert error_code(verify(client, DeviceIdentity.new("eve"), code, ip)) == "INVALID_SHORT_CODE"

    def test_a_full_book_refuses_and_keeps_the_code(self, client, family, alice, dave, ip):
        code = code_of(client, alice)
        with override_settings(BOOK_MAX_DEVICES=2):
            response = verify(client, dave, code, ip)
        assert response.status_code == 409
        assert error_code(response) == "DEVICE_LIMIT_REACHED"
        assert not Device.objects.filter(pk=dave.device_id).exists()
        assert verify(client, dave, code, ip).status_code == 200  # the code was not burned

    def test_a_registered_key_is_refused_and_keeps_the_code(self, client, family, alice, bob, ip):
        code = code_of(client, alice)
        clone = DeviceIdentity(key=bob.key, device_id=uuid.uuid4(), name="clone")
        response = verify(client, clone, code, ip)
        assert response.status_code == 409
        assert error_code(response) == "DEVICE_ALREADY_REGISTERED"
        assert verify(client, DeviceIdentity.new("dave"), code, ip).status_code == 200

    def test_a_token_not_signed_by_the_body_key_is_refused(self, client, family, alice, dave, ip):
        code = code_of(client, alice)
        body = {"short_code": code, "public_key": DeviceIdentity.new("x").key.public_key_b64, "device_name": "x"}
        response = client.post(
            "/api/v1/pairing/verify", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {dave.registration_token()}"
        )
        assert response.status_code == 401
        assert verify(client, dave, code, ip).status_code == 200


@pytest.mark.django_db
class TestGuessBudget:
    def test_five_wrong_codes_lock_the_device_out_with_retry_after(self, client, family, alice, dave, ip):
        good = code_of(client, alice)
        wrong = "000000" if good != "000000" else "000001"
        for _ in range(5):
            assert error_code(verify(client, dave, wrong, ip)) == "INVALID_SHORT_CODE"
        locked = verify(client, dave, good, ip)
        assert locked.status_code == 429
        assert error_code(locked) == "RATE_LIMIT_EXCEEDED"
        assert 1 <= int(locked["Retry-After"]) <= 600

    def test_five_wrong_codes_from_one_address_lock_out_every_device_there(self, client, family, alice, ip):
        good = code_of(client, alice)
        wrong = "000000" if good != "000000" else "000001"
        for _ in range(5):
            verify(client, DeviceIdentity.new("guesser"), wrong, ip)
        assert verify(client, DeviceIdentity.new("next"), good, ip).status_code == 429

    def test_the_lockout_ends_with_its_window(self, client, family, alice, dave, ip, clock):
        wrong = "999999"
        for _ in range(5):
            verify(client, dave, wrong, ip)
        assert verify(client, dave, wrong, ip).status_code == 429
        clock.advance(600)
        good = code_of(client, alice)
        assert verify(client, dave, good, ip).status_code == 200


@pytest.mark.django_db
class TestRevoke:
    def test_revoking_a_device_refuses_its_tokens(self, client, family, alice, bob):
        response = client.delete(f"/api/v1/books/{family.id}/devices/{bob.device_id}", **alice.auth())
        assert response.status_code == 200
        assert response.json()["data"]["device_id"] == str(bob.device_id)
        refused = client.get(f"/api/v1/books/{family.id}/devices", **bob.auth())
        assert (refused.status_code, error_code(refused)) == (401, "INVALID_TOKEN")

    def test_a_device_can_revoke_itself(self, client, family, bob):
        assert client.delete(f"/api/v1/books/{family.id}/devices/{bob.device_id}", **bob.auth()).status_code == 200

    def test_a_device_of_another_book_is_not_found(self, client, family, neighbours, alice, carol):
        response = client.delete(f"/api/v1/books/{family.id}/devices/{carol.device_id}", **alice.auth())
        assert (response.status_code, error_code(response)) == (404, "DEVICE_NOT_FOUND")
        assert Device.objects.get(pk=carol.device_id).revoked_at is None


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_answers_with_the_joiner_who_verifies_during_the_wait(family, alice, dave, ip):
    from threading import Thread

    code = code_of(Client(), alice)

    def join_later():
        try:
            time.sleep(0.5)
            verify(Client(), dave, code, ip)
        finally:
            connection.close()

    joiner = Thread(target=join_later)
    joiner.start()
    # Without the wait the answer would be "waiting": the joiner verifies half a second later.
    data = exchange(Client(), alice, code, wait=20).json()["data"]
    joiner.join()
    assert data["status"] == "completed"
    assert data["peer_device_id"] == str(dave.device_id)


@pytest.mark.django_db
def test_an_exchange_while_a_verify_is_writing_its_device_answers_waiting(client, family, alice):
    from apps.pairing import codes

    code = code_of(client, alice)
    assert codes.code_claim(code)  # a verify took the code and has not completed yet
    assert exchange(client, alice, code).json()["data"] == {"status": "waiting"}


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_verifies_with_the_right_code_have_one_winner(family, alice):
    code = code_of(Client(), alice)
    joiners = [DeviceIdentity.new(f"racer {i}") for i in range(50)]

    def attempt(joiner):
        try:
            return verify(Client(), joiner, code, f"10.200.0.{joiners.index(joiner)}").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(attempt, joiners))
    assert statuses.count(200) == 1
    assert statuses.count(400) == 49
    assert Device.objects.filter(book=family).count() == 3
