"""The client's photo encryption: AES-256-GCM blobs bound to their book and transaction."""

from __future__ import annotations

import os
import uuid

import pytest
from cryptography.exceptions import InvalidTag

from homepocket_client import PHOTO_MAX_BYTES, photo_associated_data, photo_decrypt, photo_encrypt, photo_key_new

BOOK = uuid.UUID("11111111-2222-3333-4444-555555555555")


def test_a_blob_decrypts_to_the_photo_with_the_same_key_and_context():
    key, photo = photo_key_new(), os.urandom(5000)
    aad = photo_associated_data(BOOK, "tx-1")
    blob = photo_encrypt(key, photo, associated_data=aad)
    assert blob[0] == 1 and len(blob) == len(photo) + 29
    assert photo_decrypt(key, blob, associated_data=aad) == photo


def test_two_encryptions_of_one_photo_differ():
    key, photo = photo_key_new(), b"receipt"
    assert photo_encrypt(key, photo) != photo_encrypt(key, photo)


@pytest.mark.parametrize("change", ["flip_a_byte", "other_transaction", "other_key"])
def test_an_altered_or_moved_blob_does_not_decrypt(change):
    key, photo = photo_key_new(), os.urandom(100)
    aad = photo_associated_data(BOOK, "tx-1")
    blob = photo_encrypt(key, photo, associated_data=aad)
    if change == "flip_a_byte":
        blob = blob[:-1] + bytes([blob[-1] ^ 1])
    elif change == "other_transaction":
        aad = photo_associated_data(BOOK, "tx-2")
    else:
        key = photo_key_new()
    with pytest.raises(InvalidTag):
        photo_decrypt(key, blob, associated_data=aad)


def test_a_photo_whose_blob_would_pass_the_cap_is_refused_before_upload():
    with pytest.raises(ValueError):
        photo_encrypt(photo_key_new(), bytes(PHOTO_MAX_BYTES - 28))
    assert len(photo_encrypt(photo_key_new(), bytes(PHOTO_MAX_BYTES - 29))) == PHOTO_MAX_BYTES


def test_an_unknown_blob_version_is_refused():
    with pytest.raises(ValueError):
        photo_decrypt(photo_key_new(), b"\x02" + bytes(40))
