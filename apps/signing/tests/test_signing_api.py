"""The signing API in-process (DRF views, a real signer process from tests/fixtures.py)."""

import base64
import hashlib
import os
from io import StringIO

import pytest
from coincurve import PublicKey
from django.core.management import call_command
from django.db import connection

from apps.audit.models import AuditEvent
from apps.quotas.services import api_key_create
from apps.signing.addresses import eip55_address
from apps.signing.models import SigningKey
from apps.signing.selectors import signing_key_records_forget
from apps.signing.usage import signing_usage_flush

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_counts_of_other_tests():
    signing_usage_flush()


@pytest.fixture
def service_key():
    return api_key_create(name="wallet service", scopes=["signing"])[1]


def _auth(key):
    return {"HTTP_AUTHORIZATION": f"Api-Key {key}"}


def _create(client, key):
    response = client.post("/api/v1/signing/keys", **_auth(key))
    assert response.status_code == 201, response.content
    return response.json()["data"]


def _sign(client, key, key_id, digest_hex):
    return client.post("/api/v1/signing/sign", {"key_id": key_id, "digest": digest_hex}, content_type="application/json", **_auth(key))


def test_a_created_key_signs_and_the_signature_verifies_and_recovers_the_key(client, service_key):
    created = _create(client, service_key)
    public_key = bytes.fromhex(created["public_key"])
    assert len(public_key) == 33 and created["address"] == eip55_address(public_key)
    digest = hashlib.sha256(b"a family ledger entry").digest()
    body = _sign(client, service_key, created["key_id"], digest.hex()).json()["data"]
    signature = bytes.fromhex(body["signature"])
    assert len(signature) == 64 and body["recovery_id"] in (0, 1)
    assert int.from_bytes(signature[32:], "big") <= 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0  # low-S
    recovered = PublicKey.from_signature_and_message(signature + bytes([body["recovery_id"]]), digest, hasher=None)
    assert recovered.format(compressed=True) == public_key
    assert PublicKey(public_key).verify(bytes.fromhex(body["der"]), digest, hasher=None)
    # RFC 6979: the same digest signs the same way again.
    assert _sign(client, service_key, created["key_id"], digest.hex()).json()["data"] == body


def test_the_address_is_eip55_checksummed():
    # The public key of private key 1 (the generator point) and its well-known address.
    g = PublicKey.from_secret((1).to_bytes(32, "big")).format()
    assert eip55_address(g) == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"


@pytest.mark.parametrize("size", [31, 33])
def test_a_digest_of_other_than_32_bytes_is_invalid_argument(client, service_key, size):
    created = _create(client, service_key)
    response = _sign(client, service_key, created["key_id"], os.urandom(size).hex())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_ARGUMENT"


def test_another_api_key_gets_invalid_key(client, service_key):
    created = _create(client, service_key)
    other = api_key_create(name="someone else", scopes=["signing"])[1]
    response = _sign(client, other, created["key_id"], os.urandom(32).hex())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "INVALID_KEY"


def test_an_unknown_key_is_invalid_key(client, service_key):
    response = _sign(client, service_key, "00000000-0000-4000-8000-000000000000", os.urandom(32).hex())
    assert response.status_code == 404 and response.json()["error"]["code"] == "INVALID_KEY"


def test_an_api_key_without_the_signing_scope_is_forbidden(client):
    key = api_key_create(name="auditor", scopes=["audit:read"])[1]
    response = client.post("/api/v1/signing/keys", **_auth(key))
    assert response.status_code == 403 and response.json()["error"]["code"] == "FORBIDDEN"
    assert not SigningKey.objects.exists()


def test_key_creation_is_audited_and_usage_is_one_counted_row_per_key(client, service_key):
    created = _create(client, service_key)
    assert AuditEvent.objects.filter(event_type="signing_key.created", target=created["key_id"]).count() == 1
    for _ in range(5):
        _sign(client, service_key, created["key_id"], os.urandom(32).hex())
    assert signing_usage_flush() == 1
    usage = AuditEvent.objects.get(event_type="signing.usage", target=created["key_id"])
    assert usage.details["count"] == 5
    key = SigningKey.objects.get(pk=created["key_id"])
    assert key.use_count == 5 and key.last_used_at is not None


def test_master_key_rotation_keeps_every_key_usable(client, service_key, signer_sidecar):
    keys = [_create(client, service_key) for _ in range(3)]
    before = set(SigningKey.objects.values_list("master_key_id", flat=True))
    out = StringIO()
    call_command("signing", "rotate-master-key", "--batch-size", "2", stdout=out)
    assert "re-wrapped 2/3 data keys" in out.getvalue() and "re-wrapped 3/3 data keys" in out.getvalue()
    after = set(SigningKey.objects.values_list("master_key_id", flat=True))
    assert len(after) == 1 and not after & before
    # A fresh signer knows only what the database holds: every key must unlock from it.
    signer_sidecar.kill(0)
    signer_sidecar.start(0)
    signing_key_records_forget()
    for created in keys:
        digest = os.urandom(32)
        response = _sign(client, service_key, created["key_id"], digest.hex())
        for _ in range(20):  # the restarted signer answers UNLOCK_REQUIRED until the key is unlocked
            if response.status_code != 503:
                break
            assert response.json()["error"]["code"] == "UNLOCK_REQUIRED"
            response = _sign(client, service_key, created["key_id"], digest.hex())
        body = response.json()["data"]
        recovered = PublicKey.from_signature_and_message(bytes.fromhex(body["signature"]) + bytes([body["recovery_id"]]), digest, hasher=None)
        assert recovered.format().hex() == created["public_key"]


def test_no_private_key_bytes_are_in_the_database(client, service_key, signer_sidecar):
    """Sign with a key, then look for its private key (found by brute force over what the signer
    could have made is impossible, so ask: does any column hold 32 bytes that derive its public key?)"""
    created = _create(client, service_key)
    public_key = bytes.fromhex(created["public_key"])
    row = SigningKey.objects.get(pk=created["key_id"])
    dump = b""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM signing_signingkey")
        for record in cursor.fetchall():
            dump += b"".join(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode() for v in record)
    # Every 32-byte window of the stored row must fail to be the private key of the public key.
    for i in range(len(dump) - 31):
        window = dump[i : i + 32]
        try:
            derived = PublicKey.from_secret(window).format()
        except ValueError:
            continue
        assert derived != public_key
    assert bytes(row.wrapped_key) and bytes(row.wrapped_dek)


def test_with_every_signer_down_sign_and_create_answer_retry_later(client, service_key, settings, tmp_path):
    from apps.signing.client import signer_clients_reset

    created = _create(client, service_key)
    settings.SIGNER_SOCKETS = [str(tmp_path / "dead.sock")]
    signer_clients_reset()
    try:
        response = _sign(client, service_key, created["key_id"], os.urandom(32).hex())
        assert response.status_code == 503 and response.json()["error"]["code"] == "RETRY_LATER"
        assert 0.2 <= float(response["Retry-After"]) <= 1.0
        response = client.post("/api/v1/signing/keys", **_auth(service_key))
        assert response.status_code == 503 and response.json()["error"]["code"] == "RETRY_LATER"
        assert SigningKey.objects.count() == 1  # nothing half-made
    finally:
        signer_clients_reset()


def test_the_admin_lists_keys_by_api_key_with_use_counts_and_no_key_material(admin_client, client, service_key):
    created = _create(client, service_key)
    _sign(client, service_key, created["key_id"], os.urandom(32).hex())
    signing_usage_flush()
    row = SigningKey.objects.get(pk=created["key_id"])
    listing = admin_client.get("/admin/signing/signingkey/").content.decode()
    assert created["address"] in listing and "wallet service" in listing
    page = admin_client.get(f"/admin/signing/signingkey/{created['key_id']}/change/").content.decode()
    assert created["public_key"] in page
    for blob in (bytes(row.wrapped_key), bytes(row.wrapped_dek)):
        assert blob.hex() not in page and base64.b64encode(blob).decode() not in page
    assert admin_client.get("/admin/signing/signingkey/add/").status_code == 403
