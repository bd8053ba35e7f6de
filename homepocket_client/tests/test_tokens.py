from __future__ import annotations

import uuid

import jwt
import pytest

from homepocket_client import MAX_TOKEN_LIFETIME_SECONDS, DeviceKey, device_token_mint

DEVICE_ID = uuid.UUID("11111111-1111-4111-8111-111111111111")
BOOK_ID = uuid.UUID("22222222-2222-4222-8222-222222222222")
NOW = 1_750_000_000


def _verify(token: str, key: DeviceKey) -> dict:
    return jwt.decode(token, key.public_key, algorithms=["EdDSA"], options={"verify_exp": False})


def test_it_mints_a_book_token_that_verifies_with_the_public_key():
    key = DeviceKey.generate()

    token = device_token_mint(key, device_id=DEVICE_ID, book_id=BOOK_ID, lifetime_seconds=600, now=NOW)

    assert _verify(token, key) == {"sub": str(DEVICE_ID), "book_id": str(BOOK_ID), "iat": NOW, "exp": NOW + 600}


def test_it_mints_a_registration_token_without_a_book_id():
    key = DeviceKey.generate()

    token = device_token_mint(key, device_id=DEVICE_ID, now=NOW)

    claims = _verify(token, key)
    assert "book_id" not in claims
    assert claims == {"sub": str(DEVICE_ID), "iat": NOW, "exp": NOW + 3600}


def test_it_signs_with_eddsa():
    token = device_token_mint(DeviceKey.generate(), device_id=DEVICE_ID)

    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"


def test_it_mints_tokens_that_another_key_does_not_verify():
    token = device_token_mint(DeviceKey.generate(), device_id=DEVICE_ID, book_id=BOOK_ID)

    with pytest.raises(jwt.InvalidSignatureError):
        _verify(token, DeviceKey.generate())


def test_it_accepts_ids_as_strings():
    key = DeviceKey.generate()

    token = device_token_mint(key, device_id=str(DEVICE_ID), book_id=str(BOOK_ID).upper(), now=NOW)

    assert _verify(token, key)["book_id"] == str(BOOK_ID)


def test_it_allows_a_lifetime_of_exactly_24_hours():
    key = DeviceKey.generate()

    token = device_token_mint(key, device_id=DEVICE_ID, lifetime_seconds=MAX_TOKEN_LIFETIME_SECONDS, now=NOW)

    assert _verify(token, key)["exp"] == NOW + 24 * 3600


@pytest.mark.parametrize("lifetime", [MAX_TOKEN_LIFETIME_SECONDS + 1, 0, -60])
def test_it_refuses_a_lifetime_outside_one_second_to_24_hours(lifetime):
    with pytest.raises(ValueError, match="lifetime_seconds"):
        device_token_mint(DeviceKey.generate(), device_id=DEVICE_ID, lifetime_seconds=lifetime)


def test_it_refuses_a_device_id_that_is_not_a_uuid():
    with pytest.raises(ValueError, match="device_id"):
        device_token_mint(DeviceKey.generate(), device_id="alice")
