"""Every way a device token is refused, and the codes the refusals answer (docs/api.md)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils import timezone

from apps.pairing.models import Device
from homepocket_client import DeviceKey, device_token_mint


def devices_url(book_id) -> str:
    return f"/api/v1/books/{book_id}/devices"


def error_of(response) -> dict:
    body = response.json()
    assert body["success"] is False
    return body["error"]


def claims_for(persona, **overrides) -> dict:
    now = int(time.time())
    claims = {"sub": str(persona.device_id), "book_id": str(persona.book_id), "iat": now, "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def get_devices(client, persona, token):
    return client.get(devices_url(persona.book_id), HTTP_AUTHORIZATION=f"Bearer {token}")


def assert_refused(response, status: int, code: str, reason: str | None = None) -> None:
    assert response.status_code == status, response.content
    error = error_of(response)
    assert error["code"] == code
    if reason:
        assert error["details"]["reason"] == reason


@pytest.mark.django_db
class TestTokenRefusals:
    def test_it_accepts_a_valid_token(self, client, family, alice):
        response = get_devices(client, alice, alice.book_token())
        assert response.status_code == 200

    def test_it_refuses_a_request_without_a_token(self, client, family, alice):
        response = client.get(devices_url(alice.book_id))
        assert_refused(response, 401, "INVALID_TOKEN")
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_it_refuses_a_header_that_is_not_bearer(self, client, family, alice):
        response = client.get(devices_url(alice.book_id), HTTP_AUTHORIZATION=f"Token {alice.book_token()}")
        assert_refused(response, 401, "INVALID_TOKEN", "malformed_header")

    def test_it_refuses_garbage(self, client, family, alice):
        assert_refused(get_devices(client, alice, "not.a.jwt"), 401, "INVALID_TOKEN", "malformed")

    def test_it_refuses_alg_none(self, client, family, alice):
        token = jwt.encode(claims_for(alice), None, algorithm="none")
        assert_refused(get_devices(client, alice, token), 401, "INVALID_TOKEN", "algorithm_not_allowed")

    def test_it_refuses_hs256_signed_with_the_public_key(self, client, family, alice):
        # The classic confusion attack: the device's public key used as an HMAC secret.
        token = jwt.encode(claims_for(alice), alice.key.public_key_b64, algorithm="HS256")
        assert_refused(get_devices(client, alice, token), 401, "INVALID_TOKEN", "algorithm_not_allowed")

    def test_it_refuses_rs256(self, client, family, alice):
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(claims_for(alice), rsa_key, algorithm="RS256")
        assert_refused(get_devices(client, alice, token), 401, "INVALID_TOKEN", "algorithm_not_allowed")

    def test_it_refuses_a_token_carrying_its_own_jwk(self, client, family, alice):
        attacker = DeviceKey.generate()
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}
        token = jwt.encode(claims_for(alice), attacker.private_key, algorithm="EdDSA", headers={"jwk": jwk})
        assert_refused(get_devices(client, alice, token), 401, "INVALID_TOKEN", "embedded_key_not_allowed")

    def test_it_refuses_a_jku_header(self, client, family, alice):
        token = jwt.encode(claims_for(alice), alice.key.private_key, algorithm="EdDSA", headers={"jku": "https://evil.example/k"})
        assert_refused(get_devices(client, alice, token), 401, "INVALID_TOKEN", "embedded_key_not_allowed")

    def test_it_refuses_an_expired_token(self, client, family, alice):
        token = alice.book_token(now=time.time() - 3600, lifetime_seconds=600)
        assert_refused(get_devices(client, alice, token), 401, "INVALID_TOKEN", "expired")

    def test_it_accepts_a_token_expired_within_the_leeway(self, client, family, alice):
        token = alice.book_token(now=time.time() - 630, lifetime_seconds=600)
        assert get_devices(client, alice, token).status_code == 200

    def test_it_refuses_a_token_issued_in_the_future(self, client, family, alice):
        token = alice.book_token(now=time.time() + 600, lifetime_seconds=600)
        assert_refused(get_devices(client, alice, token), 401, "INVALID_TOKEN", "issued_in_future")

    def test_it_refuses_a_lifetime_over_24_hours(self, client, family, alice):
        now = int(time.time())
        token = jwt.encode(claims_for(alice, iat=now, exp=now + 24 * 3600 + 1), alice.key.private_key, algorithm="EdDSA")
        assert_refused(get_devices(client, alice, token), 401, "INVALID_TOKEN", "lifetime_too_long")

    @pytest.mark.parametrize("claim", ["sub", "book_id", "iat", "exp"])
    def test_it_refuses_a_token_missing_a_required_claim(self, client, family, alice, claim):
        token = jwt.encode(claims_for(alice, **{claim: None}), alice.key.private_key, algorithm="EdDSA")
        assert_refused(get_devices(client, alice, token), 401, "INVALID_TOKEN")

    def test_it_refuses_a_token_signed_by_another_key(self, client, family, alice):
        intruder = DeviceKey.generate()
        token = jwt.encode(claims_for(alice), intruder.private_key, algorithm="EdDSA")
        assert_refused(get_devices(client, alice, token), 401, "INVALID_TOKEN", "bad_signature")

    def test_it_refuses_an_unknown_device(self, client, family, alice):
        token = jwt.encode(claims_for(alice, sub=str(uuid.uuid4())), alice.key.private_key, algorithm="EdDSA")
        assert_refused(get_devices(client, alice, token), 401, "INVALID_TOKEN", "unknown_device")

    def test_it_refuses_a_revoked_device(self, client, family, alice, bob):
        Device.objects.filter(pk=bob.device_id).update(revoked_at=timezone.now())
        assert_refused(get_devices(client, bob, bob.book_token()), 401, "INVALID_TOKEN", "device_revoked")

    def test_it_refuses_a_token_for_another_book_than_the_devices(self, client, family, neighbours, alice):
        token = device_token_mint(alice.key, device_id=alice.device_id, book_id=neighbours.id)
        response = client.get(devices_url(neighbours.id), HTTP_AUTHORIZATION=f"Bearer {token}")
        assert_refused(response, 403, "FORBIDDEN", "book_mismatch")

    def test_it_refuses_a_path_book_that_is_not_the_tokens_book(self, client, family, neighbours, carol):
        response = client.get(devices_url(family.id), **carol.auth())
        assert_refused(response, 403, "FORBIDDEN", "book_mismatch")

    def test_it_answers_book_not_found_for_a_book_that_does_not_exist(self, client, family, alice):
        response = client.get(devices_url(uuid.uuid4()), **alice.auth())
        assert_refused(response, 404, "BOOK_NOT_FOUND")


@pytest.mark.django_db
class TestLastActive:
    def test_it_records_activity_on_the_first_request(self, client, family, alice):
        get_devices(client, alice, alice.book_token())
        assert Device.objects.get(pk=alice.device_id).last_active_at is not None

    def test_it_writes_last_active_at_at_most_once_a_minute(self, client, family, alice, django_assert_num_queries):
        get_devices(client, alice, alice.book_token())
        first = Device.objects.get(pk=alice.device_id).last_active_at
        # Fresh row: the request reads the device, the book and the device list, and writes nothing.
        with django_assert_num_queries(3):
            get_devices(client, alice, alice.book_token())
        assert Device.objects.get(pk=alice.device_id).last_active_at == first

    def test_it_writes_again_once_the_minute_has_passed(self, client, family, alice):
        get_devices(client, alice, alice.book_token())
        an_hour_ago = timezone.now() - timedelta(hours=1)
        Device.objects.filter(pk=alice.device_id).update(last_active_at=an_hour_ago)
        get_devices(client, alice, alice.book_token())
        assert Device.objects.get(pk=alice.device_id).last_active_at > an_hour_ago
