from __future__ import annotations

import base64

import pytest

from homepocket_client import DeviceKey


def test_it_restores_the_same_key_from_its_private_bytes():
    key = DeviceKey.generate()

    restored = DeviceKey.from_private_bytes(key.private_bytes())

    assert restored.public_key_bytes == key.public_key_bytes
    assert restored == key


def test_it_gives_the_public_key_as_32_bytes_in_standard_base64():
    key = DeviceKey.generate()

    assert len(key.public_key_bytes) == 32
    assert len(key.public_key_b64) == 44
    assert base64.b64decode(key.public_key_b64, validate=True) == key.public_key_bytes


def test_it_refuses_private_bytes_of_the_wrong_length():
    with pytest.raises(ValueError, match="32 raw bytes"):
        DeviceKey.from_private_bytes(b"\x01" * 31)


def test_it_never_shows_the_private_key_in_its_repr():
    key = DeviceKey.generate()
    private = key.private_bytes()

    text = repr(key)

    assert base64.b64encode(private).decode() not in text
    assert private.hex() not in text
    assert key.public_key_b64 in text


def test_it_makes_a_different_key_each_time():
    assert DeviceKey.generate() != DeviceKey.generate()
