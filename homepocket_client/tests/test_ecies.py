"""ECIES v1: the committed test vectors, the documented derivation step by step, and tampering."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from coincurve import PrivateKey, PublicKey
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from homepocket_client.ecies import OVERHEAD, EciesError, ecies_decrypt, ecies_encrypt

REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((REPO / "docs" / "ecies-vectors.json").read_text())["vectors"]
AAD = os.urandom(16)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{len(v['plaintext']) // 2}B")
def test_the_committed_vectors_decrypt(vector):
    key = PrivateKey(bytes.fromhex(vector["recipient_private_key"]))
    assert ecies_decrypt(key, bytes.fromhex(vector["message"]), aad=bytes.fromhex(vector["aad"])) == bytes.fromhex(
        vector["plaintext"]
    )


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{len(v['plaintext']) // 2}B")
def test_the_committed_vectors_follow_the_documented_steps(vector):
    """Rebuild each message from docs/ecies.md's steps without the module under test."""
    recipient_public = bytes.fromhex(vector["recipient_public_key"])
    ephemeral = PrivateKey(bytes.fromhex(vector["ephemeral_private_key"]))
    ephemeral_public = ephemeral.public_key.format()
    shared_point = PublicKey(recipient_public).multiply(ephemeral.secret).format(compressed=True)
    secret = hashlib.sha256(shared_point).digest()
    okm = HKDF(hashes.SHA256(), 64, salt=ephemeral_public, info=b"homepocket/ecies/v1").derive(secret)
    nonce = bytes.fromhex(vector["nonce"])
    body = b"\x01" + ephemeral_public + nonce + AESGCM(okm[:32]).encrypt(nonce, bytes.fromhex(vector["plaintext"]),
                                                                         bytes.fromhex(vector["aad"]))  # fmt: skip
    mac = hmac.HMAC(okm[32:], hashes.SHA256())
    mac.update(body)
    assert body + mac.finalize() == bytes.fromhex(vector["message"])


def test_the_vectors_file_is_what_the_script_makes():
    done = subprocess.run([sys.executable, "scripts/ecies_vectors.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_a_message_round_trips_with_its_overhead():
    key = PrivateKey()
    message = ecies_encrypt(key.public_key.format(), b"share", aad=AAD)
    assert len(message) == OVERHEAD + 5 and message[0] == 1
    assert ecies_decrypt(key, message, aad=AAD) == b"share"


def test_two_encryptions_of_one_share_differ():
    key = PrivateKey()
    assert ecies_encrypt(key.public_key.format(), b"s", aad=AAD) != ecies_encrypt(key.public_key.format(), b"s", aad=AAD)


@pytest.mark.parametrize(
    "where",
    [1, 1 + 33, 1 + 33 + 12, -32 - 16, -32 - 1, -32, -1],
    ids=["ephemeral key", "nonce", "ciphertext", "tag first byte", "tag last byte", "hmac first byte", "hmac last byte"],
)
def test_a_flipped_byte_anywhere_is_refused(where):
    key = PrivateKey()
    message = bytearray(ecies_encrypt(key.public_key.format(), b"the share bytes", aad=AAD))
    message[where] ^= 0x01
    with pytest.raises(EciesError):
        ecies_decrypt(key, bytes(message), aad=AAD)


def test_a_wrong_aad_is_refused():
    key = PrivateKey()
    message = ecies_encrypt(key.public_key.format(), b"share", aad=AAD)
    with pytest.raises(EciesError, match="associated data"):
        ecies_decrypt(key, message, aad=os.urandom(16))


def test_another_key_cannot_open_it():
    message = ecies_encrypt(PrivateKey().public_key.format(), b"share", aad=AAD)
    with pytest.raises(EciesError):
        ecies_decrypt(PrivateKey(), message, aad=AAD)


def test_a_short_or_unversioned_message_is_refused():
    key = PrivateKey()
    message = ecies_encrypt(key.public_key.format(), b"share", aad=AAD)
    for bad in (message[: OVERHEAD - 1], b"\x02" + message[1:]):
        with pytest.raises(EciesError):
            ecies_decrypt(key, bad, aad=AAD)
