"""The share delivery SDK against a scripted server: verification, tampering, and which failures it retries."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid

import httpx
import pytest
from coincurve import PrivateKey
from coincurve.ecdsa import der_to_cdata, serialize_compact

from homepocket_client import Conflict, HomePocketClient, InvalidArgument, InvalidToken, NotFound
from homepocket_client.delivery import RetryPolicy, ShareDeliveryClient, ShareVerificationError, retryable
from homepocket_client.delivery_signature import delivery_digest
from homepocket_client.ecies import ecies_encrypt
from homepocket_client.errors import RateLimited, ServerError, ServiceUnavailable, TransportError
from homepocket_client.tests.fake_server import BASE_URL, envelope_error, envelope_success, json_response

SERVER_KEY = PrivateKey()
SHARE = os.urandom(100)
BACKUP = uuid.uuid4()
REQUEST_PATH = "/api/v1/backup/delivery/request"


class ShareServer:
    """Answers share requests as the real server would, with hooks to damage or refuse them."""

    def __init__(self, alice):
        self.alice = alice
        self.delivery_id = uuid.uuid4()
        self.signing_key = SERVER_KEY
        self.damage = None  # a function bytes -> bytes applied to the ciphertext after signing
        self.aad = None
        self.timestamp = None
        self.refusals: list[httpx.Response | Exception] = []
        self.paths: list[str] = []
        self.confirms: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.refusals:
            refusal = self.refusals.pop(0)
            if isinstance(refusal, Exception):
                raise refusal
            return refusal
        body = json.loads(request.content or b"{}")
        if request.url.path.endswith("/confirm"):
            self.confirms.append(body)
            return json_response(200, envelope_success(self._status("CONFIRMED" if body["received_successfully"] else "PENDING")))
        encrypted = ecies_encrypt(bytes.fromhex(body["client_public_key"]), SHARE, aad=self.aad or self.delivery_id.bytes)
        stamp = self.timestamp if self.timestamp is not None else int(time.time())
        digest = delivery_digest(delivery_id=self.delivery_id, recipient_device_id=self.alice.device_id, backup_id=BACKUP,
                                 timestamp=stamp, encrypted_share=encrypted)  # fmt: skip
        signature = serialize_compact(der_to_cdata(self.signing_key.sign(digest, hasher=None)))
        if self.damage:
            encrypted = self.damage(encrypted)
        data = {"delivery_id": str(self.delivery_id), "encrypted_share": base64.b64encode(encrypted).decode(),
                "signature": signature.hex(), "timestamp": stamp}  # fmt: skip
        return json_response(200, envelope_success(data))

    def _status(self, status: str) -> dict:
        return {"delivery_id": str(self.delivery_id), "client_id": str(self.alice.device_id), "backup_id": str(BACKUP),
                "status": status, "created_at": "2026-01-01T00:00:00Z", "delivered_at": None, "confirmed_at": None,
                "retry_count": 0, "last_error": ""}  # fmt: skip


class NoSleep:
    def __init__(self):
        self.waits: list[float] = []
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def policy(self, **kwargs) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleep, random=lambda: 1.0, monotonic=lambda: self.now, **kwargs)


@pytest.fixture
def server(alice):
    return ShareServer(alice)


@pytest.fixture
def clock():
    return NoSleep()


@pytest.fixture
def sdk(server, clock):
    with HomePocketClient(BASE_URL, transport=httpx.MockTransport(server)) as http:
        yield ShareDeliveryClient(http, server_public_key=SERVER_KEY.public_key.format(), retry=clock.policy())


def test_it_receives_verifies_decrypts_and_confirms(sdk, server, alice):
    received = sdk.receive(alice, backup_id=BACKUP)
    assert received.share == SHARE
    assert server.confirms == [{"delivery_id": str(server.delivery_id), "received_successfully": True,
                                "share_sha256": received.share_sha256}]  # fmt: skip


@pytest.mark.parametrize(
    "where", [lambda m: m[:50] + bytes([m[50] ^ 1]) + m[51:], lambda m: m[:-40] + bytes([m[-40] ^ 1]) + m[-39:],
              lambda m: m[:-1] + bytes([m[-1] ^ 1])],
    ids=["ciphertext", "tag", "hmac"],
)  # fmt: skip
def test_a_flipped_byte_after_signing_is_refused_and_reported(sdk, server, alice, where):
    """The server's signature covers the ciphertext, so a change in transit fails the signature first."""
    server.damage = where
    with pytest.raises(ShareVerificationError) as refused:
        sdk.receive(alice, backup_id=BACKUP)
    assert refused.value.reason == "signature"
    assert server.confirms == []


def test_a_wrong_aad_is_refused_and_reported_as_not_received(sdk, server, alice):
    server.aad = uuid.uuid4().bytes  # signed correctly, but encrypted for another delivery
    with pytest.raises(ShareVerificationError) as refused:
        sdk.receive(alice, backup_id=BACKUP)
    assert refused.value.reason == "decrypt"
    assert [c["received_successfully"] for c in server.confirms] == [False]


def test_a_signature_from_another_key_is_refused(sdk, server, alice):
    server.signing_key = PrivateKey()
    with pytest.raises(ShareVerificationError) as refused:
        sdk.request(alice, backup_id=BACKUP)
    assert refused.value.reason == "signature"


def test_an_old_answer_is_refused(sdk, server, alice):
    server.timestamp = int(time.time()) - 3600
    with pytest.raises(ShareVerificationError) as refused:
        sdk.request(alice, backup_id=BACKUP)
    assert refused.value.reason == "timestamp"


@pytest.mark.parametrize(
    "refusal",
    [json_response(503, envelope_error("RETRY_LATER")), json_response(500, envelope_error("INTERNAL_ERROR")),
     json_response(429, envelope_error("RATE_LIMIT_EXCEEDED")), httpx.ConnectError("refused"),
     httpx.ReadError("connection reset")],
    ids=["RETRY_LATER", "500", "429", "connect", "reset"],
)  # fmt: skip
def test_it_retries_what_waiting_can_fix_with_the_same_body(sdk, server, alice, refusal):
    server.refusals = [refusal, refusal]
    assert sdk.request(alice, backup_id=BACKUP).share == SHARE
    assert server.paths == [REQUEST_PATH] * 3


def test_every_retry_sends_the_very_same_request(server, clock, alice):
    bodies = []

    def recording(request):
        if request.url.path == REQUEST_PATH:
            bodies.append(request.content)
        return server(request)

    server.refusals = [httpx.ReadError("lost")]
    with HomePocketClient(BASE_URL, transport=httpx.MockTransport(recording)) as http:
        ShareDeliveryClient(http, server_public_key=SERVER_KEY.public_key.format(), retry=clock.policy()).request(
            alice, backup_id=BACKUP
        )
    assert len(bodies) == 2 and bodies[0] == bodies[1]


@pytest.mark.parametrize(
    "code,status,error",
    [("REPLAY_DETECTED", 400, InvalidArgument), ("INVALID_ARGUMENT", 400, InvalidArgument),
     ("INVALID_TOKEN", 401, InvalidToken), ("DELIVERY_NOT_FOUND", 404, NotFound), ("INVALID_STATE", 409, Conflict)],
)  # fmt: skip
def test_it_never_retries_validation_auth_or_state_errors(sdk, server, alice, code, status, error):
    server.refusals = [json_response(status, envelope_error(code))]
    with pytest.raises(error):
        sdk.request(alice, backup_id=BACKUP)
    assert server.paths == [REQUEST_PATH]


def test_it_gives_up_after_5_tries(sdk, server, alice, clock):
    server.refusals = [json_response(503, envelope_error("RETRY_LATER"))] * 6
    with pytest.raises(ServiceUnavailable):
        sdk.request(alice, backup_id=BACKUP)
    assert len(server.paths) == 5 and len(clock.waits) == 4


def test_the_waits_double_from_100_ms_up_to_30_s():
    policy = RetryPolicy(random=lambda: 1.0)
    assert [policy.delay(n) for n in (0, 1, 2, 3)] == [0.1, 0.2, 0.4, 0.8]
    assert policy.delay(20) == 30.0


def test_the_waits_are_full_jitter():
    assert RetryPolicy(random=lambda: 0.25).delay(3) == pytest.approx(0.2)


def test_it_waits_at_least_the_servers_retry_after(sdk, server, alice, clock):
    server.refusals = [json_response(503, envelope_error("RETRY_LATER"), headers={"Retry-After": "7"})]
    sdk.request(alice, backup_id=BACKUP)
    assert clock.waits == [7.0]


def test_it_stops_when_the_next_wait_would_pass_5_minutes(server, alice, clock):
    server.refusals = [json_response(503, envelope_error("RETRY_LATER"), headers={"Retry-After": "200"})] * 3
    with HomePocketClient(BASE_URL, transport=httpx.MockTransport(server)) as http:
        sdk = ShareDeliveryClient(http, server_public_key=SERVER_KEY.public_key.format(), retry=clock.policy())
        with pytest.raises(ServiceUnavailable):
            sdk.request(alice, backup_id=BACKUP)
    assert clock.waits == [200.0]


def test_which_errors_are_retryable():
    assert retryable(TransportError("x")) and retryable(ServerError("INTERNAL_ERROR", "x"))
    assert retryable(RateLimited("RATE_LIMIT_EXCEEDED", "x")) and retryable(ServiceUnavailable("RETRY_LATER", "x"))
    assert not retryable(InvalidArgument("REPLAY_DETECTED", "x")) and not retryable(Conflict("INVALID_STATE", "x"))
