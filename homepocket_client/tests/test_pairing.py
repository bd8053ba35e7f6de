"""Pairing: request shapes and token kinds, parsing, typed errors, and the short authentication string.

Alice's phone (device A, in the family book) generates the code; Bob's phone (device B, new)
verifies it. The fake server answers as the documented contract says.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timezone

import httpx
import jwt
import pytest

from homepocket_client import (
    EXCHANGE_MAX_WAIT_SECONDS,
    Conflict,
    DeviceIdentity,
    DeviceKey,
    DeviceRevoked,
    InvalidArgument,
    NotFound,
    PairingCode,
    PairingExchange,
    PairingMatch,
    RateLimited,
    TransportError,
    pairing_sas,
)
from homepocket_client.tests.fake_server import FAMILY_BOOK_ID, envelope_error, envelope_success

SHORT_CODE = "042917"
EXPIRES_AT = "2025-01-01T00:05:00Z"


def _claims(request: httpx.Request) -> dict:
    """The token's claims, read without checking the signature: the test is about which kind was sent."""
    scheme, _, token = request.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    return jwt.decode(token, options={"verify_signature": False})


def _body(request: httpx.Request) -> dict:
    return json.loads(request.content)


def _verified(bob: DeviceIdentity, alice: DeviceIdentity) -> dict:
    return {
        "matched": True,
        "peer_public_key": alice.key.public_key_b64,
        "peer_device_id": str(alice.device_id),
        "book_id": str(FAMILY_BOOK_ID),
        "device_id": str(bob.device_id),
    }


def _completed(bob: DeviceIdentity) -> dict:
    return {"status": "completed", "peer_public_key": bob.key.public_key_b64, "peer_device_id": str(bob.device_id)}


# Generate (device A).


def test_it_generates_a_code_for_the_book_with_a_book_token(client, server, alice):
    server.reply(201, envelope_success({"short_code": SHORT_CODE, "expires_at": EXPIRES_AT, "ttl_seconds": 300}))

    code = client.pairing_generate(alice)

    request = server.last
    assert (request.method, request.url.path) == ("POST", "/api/v1/pairing/generate")
    assert _body(request) == {"book_id": str(FAMILY_BOOK_ID)}
    claims = _claims(request)
    assert (claims["sub"], claims["book_id"]) == (str(alice.device_id), str(FAMILY_BOOK_ID))
    assert code == PairingCode(
        short_code=SHORT_CODE, expires_at=datetime(2025, 1, 1, 0, 5, tzinfo=timezone.utc), ttl_seconds=300
    )


def test_it_refuses_to_generate_for_a_device_without_a_book(client, server, bob):
    with pytest.raises(ValueError, match="no book"):
        client.pairing_generate(bob)

    assert server.requests == []


@pytest.mark.parametrize(
    "short_code",
    [42917, "42917", "0429170", "٠٤٢٩١٧", None],
    ids=["number-loses-the-leading-zero", "five-digits", "seven-digits", "arabic-indic-digits", "null"],
)
def test_it_raises_transport_error_on_a_generated_code_that_is_not_six_ascii_digits(client, server, alice, short_code):
    server.reply(201, envelope_success({"short_code": short_code, "expires_at": EXPIRES_AT, "ttl_seconds": 300}))

    with pytest.raises(TransportError, match="documented shape"):
        client.pairing_generate(alice)


def test_it_raises_rate_limited_with_retry_after_on_generate(client, server, alice):
    server.reply(429, envelope_error("RATE_LIMIT_EXCEEDED"), headers={"Retry-After": "60"})

    with pytest.raises(RateLimited) as raised:
        client.pairing_generate(alice)

    assert (raised.value.code, raised.value.retry_after) == ("RATE_LIMIT_EXCEEDED", 60)


# Verify (device B).


def test_it_verifies_with_a_registration_token_self_signed_by_the_new_device(client, server, alice, bob):
    server.reply(200, envelope_success(_verified(bob, alice)))

    client.pairing_verify(bob, SHORT_CODE)

    request = server.last
    assert (request.method, request.url.path) == ("POST", "/api/v1/pairing/verify")
    assert _body(request) == {
        "short_code": SHORT_CODE,
        "public_key": bob.key.public_key_b64,
        "device_name": "Bob's phone",
    }
    claims = _claims(request)
    assert claims["sub"] == str(bob.device_id)
    assert "book_id" not in claims
    token = request.headers["Authorization"].removeprefix("Bearer ")
    jwt.decode(token, bob.key.public_key, algorithms=["EdDSA"])  # signed by B's own key


def test_it_records_the_book_on_the_identity_after_verify(client, server, alice, bob):
    server.reply(200, envelope_success(_verified(bob, alice)))
    assert bob.book_id is None

    match = client.pairing_verify(bob, SHORT_CODE)

    assert match == PairingMatch(
        book_id=FAMILY_BOOK_ID,
        device_id=bob.device_id,
        peer_device_id=alice.device_id,
        peer_public_key=alice.key.public_key_bytes,
    )
    assert bob.book_id == FAMILY_BOOK_ID
    assert _claims(_next_request_of(client, server, bob))["book_id"] == str(FAMILY_BOOK_ID)


def _next_request_of(client, server, identity: DeviceIdentity) -> httpx.Request:
    server.reply(200, envelope_success({"devices": [], "total_count": 0}))
    client.list_devices(identity)
    return server.last


@pytest.mark.parametrize("short_code", ["42917", "0429170", "042 917", "٠٤٢٩١٧", 42917])
def test_it_refuses_a_malformed_code_before_sending_it(client, server, bob, short_code):
    with pytest.raises(ValueError, match="6 ASCII digits"):
        client.pairing_verify(bob, short_code)

    assert server.requests == []
    assert bob.book_id is None


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (400, "INVALID_SHORT_CODE", InvalidArgument),
        (400, "SHORT_CODE_EXPIRED", InvalidArgument),
        (409, "DEVICE_LIMIT_REACHED", Conflict),
        (409, "DEVICE_ALREADY_REGISTERED", Conflict),
        (429, "RATE_LIMIT_EXCEEDED", RateLimited),
    ],
)
def test_it_raises_the_typed_error_of_a_refused_verify(client, server, bob, status, code, error_class):
    server.reply(status, envelope_error(code), headers={"Retry-After": "30"} if status == 429 else None)

    with pytest.raises(error_class) as raised:
        client.pairing_verify(bob, SHORT_CODE)

    assert (raised.value.code, raised.value.status) == (code, status)
    assert bob.book_id is None


def test_it_raises_transport_error_when_verify_says_not_matched(client, server, alice, bob):
    server.reply(200, envelope_success({**_verified(bob, alice), "matched": False}))

    with pytest.raises(TransportError, match="documented shape"):
        client.pairing_verify(bob, SHORT_CODE)

    assert bob.book_id is None


def test_it_raises_transport_error_when_verify_names_another_device(client, server, alice, bob):
    server.reply(200, envelope_success({**_verified(bob, alice), "device_id": str(uuid.uuid4())}))

    with pytest.raises(TransportError, match="other than"):
        client.pairing_verify(bob, SHORT_CODE)

    assert bob.book_id is None


def test_it_raises_transport_error_on_a_peer_key_that_is_not_32_bytes(client, server, alice, bob):
    short_key = base64.b64encode(b"\x01" * 31).decode()
    server.reply(200, envelope_success({**_verified(bob, alice), "peer_public_key": short_key}))

    with pytest.raises(TransportError, match="documented shape"):
        client.pairing_verify(bob, SHORT_CODE)


# Exchange (device A).


def test_it_exchanges_with_a_book_token_and_reports_waiting(client, server, alice):
    server.reply(200, envelope_success({"status": "waiting"}))

    result = client.pairing_exchange(alice, SHORT_CODE)

    request = server.last
    assert (request.method, request.url.path) == ("POST", "/api/v1/pairing/exchange")
    assert _body(request) == {"short_code": SHORT_CODE}
    assert _claims(request)["book_id"] == str(FAMILY_BOOK_ID)
    assert result == PairingExchange(status="waiting", peer_device_id=None, peer_public_key=None)
    assert result.completed is False


def test_it_returns_the_joiners_key_when_the_exchange_completed(client, server, alice, bob):
    server.reply(200, envelope_success(_completed(bob)))

    result = client.pairing_exchange(alice, SHORT_CODE)

    assert result.completed is True
    assert (result.peer_device_id, result.peer_public_key) == (bob.device_id, bob.key.public_key_bytes)


def test_it_long_polls_with_a_read_timeout_beyond_the_wait(client, server, alice):
    server.reply(200, envelope_success({"status": "waiting"}))

    client.pairing_exchange(alice, SHORT_CODE, wait=EXCHANGE_MAX_WAIT_SECONDS)

    assert _body(server.last) == {"short_code": SHORT_CODE}
    assert server.last.url.params["wait"] == "30"
    timeout = server.last.extensions["timeout"]
    assert timeout["read"] > 30
    assert timeout["connect"] == 10.0  # only the read waits longer


def test_it_keeps_the_client_timeout_for_other_requests(client, server, alice):
    server.reply(200, envelope_success({"status": "waiting"}))

    client.pairing_exchange(alice, SHORT_CODE, wait=25)
    client.pairing_exchange(alice, SHORT_CODE)

    assert server.last.extensions["timeout"]["read"] == 10.0


@pytest.mark.parametrize("wait", [-1, 31, 2.5, True, "5"])
def test_it_refuses_a_wait_the_server_would_refuse(client, server, alice, wait):
    with pytest.raises(ValueError, match="wait"):
        client.pairing_exchange(alice, SHORT_CODE, wait=wait)

    assert server.requests == []


@pytest.mark.parametrize(
    "data",
    [{"status": "expired"}, {"status": "completed", "peer_device_id": str(uuid.uuid4())}, {}],
    ids=["unknown-status", "completed-without-key", "no-status"],
)
def test_it_raises_transport_error_on_an_exchange_of_another_shape(client, server, alice, data):
    server.reply(200, envelope_success(data))

    with pytest.raises(TransportError, match="documented shape"):
        client.pairing_exchange(alice, SHORT_CODE)


def test_it_raises_invalid_argument_on_an_expired_code_in_exchange(client, server, alice):
    server.reply(400, envelope_error("SHORT_CODE_EXPIRED"))

    with pytest.raises(InvalidArgument) as raised:
        client.pairing_exchange(alice, SHORT_CODE, wait=5)

    assert raised.value.code == "SHORT_CODE_EXPIRED"


# Revocation.


def test_it_revokes_a_device_of_the_book_with_a_book_token(client, server, alice, bob):
    server.reply(200, envelope_success({"device_id": str(bob.device_id), "revoked_at": "2025-01-01T00:10:00.5Z"}))

    revoked = client.device_revoke(alice, bob.device_id)

    request = server.last
    assert (request.method, request.url.path) == ("DELETE", f"/api/v1/books/{FAMILY_BOOK_ID}/devices/{bob.device_id}")
    assert request.content == b""
    assert _claims(request)["book_id"] == str(FAMILY_BOOK_ID)
    assert revoked == DeviceRevoked(
        device_id=bob.device_id, revoked_at=datetime(2025, 1, 1, 0, 10, 0, 500000, tzinfo=timezone.utc)
    )


def test_it_revokes_in_another_book_when_asked(client, server, alice, bob):
    other_book = uuid.uuid4()
    server.reply(200, envelope_success({"device_id": str(bob.device_id), "revoked_at": EXPIRES_AT}))

    client.device_revoke(alice, str(bob.device_id), book_id=str(other_book))

    assert server.last.url.path == f"/api/v1/books/{other_book}/devices/{bob.device_id}"
    assert _claims(server.last)["book_id"] == str(FAMILY_BOOK_ID)


def test_it_raises_not_found_for_an_unknown_device(client, server, alice):
    server.reply(404, envelope_error("DEVICE_NOT_FOUND"))

    with pytest.raises(NotFound) as raised:
        client.device_revoke(alice, uuid.uuid4())

    assert raised.value.code == "DEVICE_NOT_FOUND"


@pytest.mark.parametrize("device_id", ["../../pairing/generate", "", "not-a-uuid"])
def test_it_refuses_a_device_id_that_is_not_a_uuid(client, server, alice, device_id):
    with pytest.raises(ValueError, match="device_id must be a UUID"):
        client.device_revoke(alice, device_id)

    assert server.requests == []


def test_it_refuses_to_revoke_from_a_device_without_a_book(client, server, bob):
    with pytest.raises(ValueError, match="no book"):
        client.device_revoke(bob, uuid.uuid4())

    assert server.requests == []


# The short authentication string.


def test_both_devices_compute_the_same_sas_from_an_honest_exchange(client, server, alice, bob):
    server.reply(200, envelope_success(_verified(bob, alice)), path="/api/v1/pairing/verify")
    server.reply(200, envelope_success(_completed(bob)), path="/api/v1/pairing/exchange")

    match = client.pairing_verify(bob, SHORT_CODE)
    exchange = client.pairing_exchange(alice, SHORT_CODE)
    assert exchange.peer_public_key is not None

    on_alice = pairing_sas(SHORT_CODE, alice.key.public_key_bytes, exchange.peer_public_key)
    on_bob = pairing_sas(SHORT_CODE, match.peer_public_key, bob.key.public_key_bytes)
    assert on_alice == on_bob
    assert len(on_alice) == 6 and on_alice.isdigit()


def test_the_sas_differs_when_the_server_gives_alice_another_key_than_bobs(client, server, alice, bob):
    mallory = DeviceKey.generate()  # the server's own key, handed to Alice as if it were Bob's
    impostor = {**_completed(bob), "peer_public_key": mallory.public_key_b64}
    server.reply(200, envelope_success(_verified(bob, alice)), path="/api/v1/pairing/verify")
    server.reply(200, envelope_success(impostor), path="/api/v1/pairing/exchange")

    match = client.pairing_verify(bob, SHORT_CODE)
    exchange = client.pairing_exchange(alice, SHORT_CODE)
    assert exchange.peer_public_key == mallory.public_key_bytes

    on_alice = pairing_sas(SHORT_CODE, alice.key.public_key_bytes, exchange.peer_public_key)
    on_bob = pairing_sas(SHORT_CODE, match.peer_public_key, bob.key.public_key_bytes)
    assert on_alice != on_bob


def test_the_sas_differs_when_the_server_gives_bob_another_key_than_alices():
    alice, bob, mallory = (DeviceKey.generate().public_key_bytes for _ in range(3))

    assert pairing_sas(SHORT_CODE, alice, bob) != pairing_sas(SHORT_CODE, mallory, bob)


def test_the_sas_depends_on_the_roles_and_the_code():
    initiator, joiner = bytes(range(32)), bytes(range(32, 64))

    assert pairing_sas(SHORT_CODE, initiator, joiner) != pairing_sas(SHORT_CODE, joiner, initiator)
    assert pairing_sas(SHORT_CODE, initiator, joiner) != pairing_sas("042918", initiator, joiner)


# Pinned vectors: every client (iOS, Android) must reproduce them. They were computed once with this
# implementation and checked against an independent SHA-256 (OpenSSL), e.g. for the first row:
#   { printf 'homepocket-pairing-sas-v1'; printf '\000'; printf '042917'; printf '\000';
#     python3 -c "import sys; sys.stdout.buffer.write(bytes(range(64)))"; } | openssl dgst -sha256
#   -> fa309b61e77a91a4305b43f54d290957cbecbc932dc4af30aa45c879ecbc8abb
#   0xfa309b61 = 4197489505; 4197489505 % 1_000_000 = 489505 -> "489505"
# The second row's digest starts a0285e69 = 2687000169 -> 169 -> "000169" (the zero padding).
# initiator = bytes(range(0, 32)) = 00 01 .. 1f, joiner = bytes(range(32, 64)) = 20 21 .. 3f.
@pytest.mark.parametrize(
    ("short_code", "initiator", "joiner", "sas"),
    [
        ("042917", bytes(range(32)), bytes(range(32, 64)), "489505"),
        ("000075", bytes(range(32)), bytes(range(32, 64)), "000169"),
        ("042917", bytes(range(32, 64)), bytes(range(32)), "474264"),
    ],
    ids=["vector", "zero-padded", "roles-swapped"],
)
def test_the_sas_matches_the_pinned_vectors(short_code, initiator, joiner, sas):
    assert pairing_sas(short_code, initiator, joiner) == sas


@pytest.mark.parametrize("short_code", ["42917", "0429170", "04291a", "٠٤٢٩١٧", "", 42917, b"042917"])
def test_the_sas_refuses_a_code_that_is_not_six_ascii_digits(short_code):
    with pytest.raises(ValueError, match="6 ASCII digits"):
        pairing_sas(short_code, bytes(32), bytes(32))


@pytest.mark.parametrize(
    "key",
    [bytes(31), bytes(33), b"", base64.b64encode(bytes(32)).decode(), bytearray(32)],
    ids=["31-bytes", "33-bytes", "empty", "base64-text", "bytearray"],
)
def test_the_sas_refuses_a_key_that_is_not_32_raw_bytes(key):
    with pytest.raises(ValueError, match="initiator_public_key"):
        pairing_sas(SHORT_CODE, key, bytes(32))
    with pytest.raises(ValueError, match="joiner_public_key"):
        pairing_sas(SHORT_CODE, bytes(32), key)
