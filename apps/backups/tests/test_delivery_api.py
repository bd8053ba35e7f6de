"""Share delivery through the API: deposit, request (replay window, nonces), confirm, status."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid

import pytest
from coincurve import PrivateKey

from apps.audit.models import AuditEvent, EventType
from apps.backups.delivery.models import DeliveryStatus, ShareDelivery, ShareDeliveryRequest, ShareDeliveryTransition
from apps.backups.tests.delivery_calls import (
    CONFIRM,
    REQUEST,
    SERVER_KEY,
    STATUS,
    confirm_body,
    deposit,
    post,
    request_body,
)
from homepocket_client.delivery_signature import delivery_digest, delivery_signature_valid
from homepocket_client.ecies import ecies_decrypt

SHARE = os.urandom(200)
SHARE_SHA = hashlib.sha256(SHARE).hexdigest()

# Every test runs twice, through the whole ASGI application: with the request endpoint's lean
# route (fast_route.py) and through Django and DRF (conftest.asgi_client).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(asgi_client):
    return asgi_client


def error_code(response) -> str:
    return response.json()["error"]["code"]


@pytest.fixture
def delivery(client, family, alice, bob) -> ShareDelivery:
    """Alice deposited SHARE for bob's phone."""
    response = deposit(client, alice, bob, SHARE)
    assert response.status_code == 201, response.content
    return ShareDelivery.objects.get(pk=response.json()["data"]["delivery_id"])


def history(delivery) -> list[tuple[str, str, str]]:
    return [(t.from_status, t.to_status, t.reason) for t in ShareDeliveryTransition.objects.filter(delivery=delivery)]


def request_share(client, bob, delivery, key=None, **kwargs):
    key = key or PrivateKey()
    return post(client, REQUEST, request_body(delivery.backup_id, key, **kwargs), bob), key


def delivered(client, bob, delivery):
    response, _ = request_share(client, bob, delivery)
    assert response.status_code == 200, response.content
    delivery.refresh_from_db()
    return delivery


class TestDeposit:
    def test_it_keeps_a_pending_delivery_with_the_share_only_wrapped(self, client, family, alice, bob):
        response = deposit(client, alice, bob, SHARE)
        assert response.status_code == 201
        data = response.json()["data"]
        assert data["status"] == "PENDING"
        row = ShareDelivery.objects.get(pk=data["delivery_id"])
        assert row.recipient_device_id == bob.device_id and row.book_id == family.pk
        assert SHARE not in bytes(row.wrapped_share)
        assert history(row) == [("", "PENDING", "deposited")]

    def test_a_new_deposit_for_the_same_backup_and_device_fails_the_old_one(self, client, family, alice, bob, delivery):
        response = deposit(client, alice, bob, b"second share", backup_id=delivery.backup_id)
        assert response.status_code == 201
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.FAILED and delivery.last_error == "replaced"
        assert ShareDelivery.objects.get(pk=response.json()["data"]["delivery_id"]).status == DeliveryStatus.PENDING

    def test_it_refuses_a_recipient_outside_the_book(self, client, family, neighbours, alice, carol):
        response = deposit(client, alice, carol, SHARE)
        assert response.status_code == 404 and error_code(response) == "DEVICE_NOT_FOUND"
        assert not ShareDelivery.objects.exists()

    def test_it_refuses_a_share_over_4_kib_and_keeps_nothing(self, client, family, alice, bob):
        response = deposit(client, alice, bob, os.urandom(4097))
        assert response.status_code == 400 and error_code(response) == "INVALID_ARGUMENT"
        assert not ShareDelivery.objects.exists()

    def test_it_takes_a_share_of_exactly_4_kib(self, client, family, alice, bob):
        assert deposit(client, alice, bob, os.urandom(4096)).status_code == 201

    def test_it_refuses_a_share_that_is_not_base64(self, client, family, alice, bob):
        body = {"backup_id": str(uuid.uuid4()), "recipient_device_id": str(bob.device_id), "share": "not base64!"}
        response = post(client, "/api/v1/backup/shares", body, alice)
        assert response.status_code == 400 and error_code(response) == "INVALID_ARGUMENT"

    def test_it_refuses_a_caller_without_a_token(self, client, family, bob):
        response = client.post("/api/v1/backup/shares", data="{}", content_type="application/json")
        assert response.status_code == 401 and error_code(response) == "INVALID_TOKEN"


class TestRequest:
    def test_the_answer_decrypts_to_the_share_and_carries_the_servers_signature(self, client, bob, delivery):
        response, key = request_share(client, bob, delivery)
        assert response.status_code == 200
        data = response.json()["data"]
        encrypted = base64.b64decode(data["encrypted_share"])
        assert ecies_decrypt(key, encrypted, aad=delivery.pk.bytes) == SHARE
        server_key = bytes.fromhex(client.get(SERVER_KEY).json()["data"]["public_key"])
        digest = delivery_digest(delivery_id=delivery.pk, recipient_device_id=bob.device_id, backup_id=delivery.backup_id,
                                 timestamp=data["timestamp"], encrypted_share=encrypted)  # fmt: skip
        assert delivery_signature_valid(server_key, bytes.fromhex(data["signature"]), digest)

    def test_it_moves_the_delivery_to_delivered_once(self, client, bob, delivery):
        delivered(client, bob, delivery)
        delivered(client, bob, delivery)
        assert delivery.status == DeliveryStatus.DELIVERED and delivery.delivered_at is not None
        assert history(delivery) == [("", "PENDING", "deposited"), ("PENDING", "DELIVERED", "requested")]

    def test_only_the_recipient_device_gets_the_share(self, client, alice, delivery):
        response, _ = request_share(client, alice, delivery)
        assert response.status_code == 404 and error_code(response) == "DELIVERY_NOT_FOUND"
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.PENDING

    def test_an_exact_retry_returns_the_same_answer(self, client, bob, delivery):
        body = request_body(delivery.backup_id, PrivateKey())
        first = post(client, REQUEST, body, bob)
        again = post(client, REQUEST, body, bob)
        assert again.status_code == 200
        assert again.json()["data"] == first.json()["data"]
        assert ShareDeliveryRequest.objects.count() == 1

    def test_a_nonce_reused_with_another_body_is_a_replay(self, client, bob, delivery):
        body = request_body(delivery.backup_id, PrivateKey())
        post(client, REQUEST, body, bob)
        response = post(client, REQUEST, {**body, "client_public_key": PrivateKey().public_key.format().hex()}, bob)
        assert response.status_code == 400 and error_code(response) == "REPLAY_DETECTED"
        assert response.json()["error"]["details"]["reason"] == "nonce_reused"

    def test_a_request_older_than_5_minutes_is_a_replay(self, client, bob, delivery, clock):
        response, _ = request_share(client, bob, delivery, timestamp=clock.timestamp() - 301)
        assert response.status_code == 400 and error_code(response) == "REPLAY_DETECTED"
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.PENDING and not ShareDeliveryRequest.objects.exists()

    def test_an_exact_retry_after_its_window_is_a_replay(self, client, bob, delivery, clock):
        body = request_body(delivery.backup_id, PrivateKey(), timestamp=clock.timestamp())
        assert post(client, REQUEST, body, bob).status_code == 200
        clock.advance(301)
        response = post(client, REQUEST, body, bob)
        assert response.status_code == 400 and error_code(response) == "REPLAY_DETECTED"

    def test_a_request_from_too_far_in_the_future_is_refused(self, client, bob, delivery, clock):
        # +302: clock.timestamp() rounds down, so +301 is within the window once a second turns meanwhile.
        response, _ = request_share(client, bob, delivery, timestamp=clock.timestamp() + 302)
        assert error_code(response) == "REPLAY_DETECTED"

    def test_it_refuses_a_key_that_is_not_a_compressed_secp256k1_point(self, client, bob, delivery):
        body = {**request_body(delivery.backup_id, PrivateKey()), "client_public_key": "02" + "00" * 32}
        response = post(client, REQUEST, body, bob)
        assert response.status_code == 400 and error_code(response) == "INVALID_ARGUMENT"

    def test_an_unknown_backup_is_not_found(self, client, family, bob):
        response = post(client, REQUEST, request_body(uuid.uuid4(), PrivateKey()), bob)
        assert response.status_code == 404 and error_code(response) == "DELIVERY_NOT_FOUND"

    def test_a_confirmed_delivery_is_not_handed_out_again(self, client, bob, delivery):
        delivered(client, bob, delivery)
        post(client, CONFIRM, confirm_body(delivery.pk, SHARE_SHA), bob)
        response, _ = request_share(client, bob, delivery)
        assert response.status_code == 409 and error_code(response) == "INVALID_STATE"


class TestConfirm:
    def test_a_matching_hash_confirms(self, client, bob, delivery):
        delivered(client, bob, delivery)
        response = post(client, CONFIRM, confirm_body(delivery.pk, SHARE_SHA), bob)
        assert response.status_code == 200 and response.json()["data"]["status"] == "CONFIRMED"
        assert history(delivery)[-1] == ("DELIVERED", "CONFIRMED", "confirmed")

    def test_confirming_a_pending_delivery_is_invalid_state_and_changes_nothing(self, client, bob, delivery):
        response = post(client, CONFIRM, confirm_body(delivery.pk, SHARE_SHA), bob)
        assert response.status_code == 409 and error_code(response) == "INVALID_STATE"
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.PENDING and len(history(delivery)) == 1

    def test_the_same_confirm_twice_answers_the_same(self, client, bob, delivery):
        delivered(client, bob, delivery)
        first = post(client, CONFIRM, confirm_body(delivery.pk, SHARE_SHA), bob)
        again = post(client, CONFIRM, confirm_body(delivery.pk, SHARE_SHA), bob)
        assert again.status_code == 200 and again.json()["data"] == first.json()["data"]
        assert len(history(delivery)) == 3

    def test_a_second_confirm_with_another_hash_is_invalid_state(self, client, bob, delivery):
        delivered(client, bob, delivery)
        post(client, CONFIRM, confirm_body(delivery.pk, SHARE_SHA), bob)
        response = post(client, CONFIRM, confirm_body(delivery.pk, "0" * 64), bob)
        assert response.status_code == 409 and error_code(response) == "INVALID_STATE"
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.CONFIRMED

    def test_a_mismatching_hash_counts_a_retry_back_to_pending(self, client, bob, delivery):
        delivered(client, bob, delivery)
        response = post(client, CONFIRM, confirm_body(delivery.pk, "0" * 64), bob)
        data = response.json()["data"]
        assert data["status"] == "PENDING" and data["retry_count"] == 1 and data["last_error"] == "hash_mismatch"

    def test_a_negative_confirm_counts_a_retry(self, client, bob, delivery):
        delivered(client, bob, delivery)
        data = post(client, CONFIRM, confirm_body(delivery.pk, SHARE_SHA, ok=False), bob).json()["data"]
        assert data["status"] == "PENDING" and data["last_error"] == "not_received"

    def test_the_next_request_waits_for_the_servers_backoff(self, client, bob, delivery, clock):
        delivered(client, bob, delivery)
        post(client, CONFIRM, confirm_body(delivery.pk, SHARE_SHA, ok=False), bob)
        response, _ = request_share(client, bob, delivery, timestamp=clock.timestamp())
        assert response.status_code == 503 and error_code(response) == "RETRY_LATER"
        assert response["Retry-After"] == "1"
        clock.advance(1.5)
        response, _ = request_share(client, bob, delivery, timestamp=clock.timestamp())
        assert response.status_code == 200

    def test_the_fifth_failed_try_fails_the_delivery(self, client, bob, delivery, clock):
        for _ in range(5):
            clock.advance(600)
            response, _ = request_share(client, bob, delivery, timestamp=clock.timestamp())
            assert response.status_code == 200, response.content
            data = post(client, CONFIRM, confirm_body(delivery.pk, "0" * 64), bob).json()["data"]
        assert data["status"] == "FAILED" and data["retry_count"] == 5
        clock.advance(600)
        response, _ = request_share(client, bob, delivery, timestamp=clock.timestamp())
        assert error_code(response) == "INVALID_STATE"

    def test_another_device_cannot_confirm(self, client, alice, bob, delivery):
        delivered(client, bob, delivery)
        response = post(client, CONFIRM, confirm_body(delivery.pk, SHARE_SHA), alice)
        assert response.status_code == 404 and error_code(response) == "DELIVERY_NOT_FOUND"


class TestStatus:
    FIELDS = {"delivery_id", "client_id", "backup_id", "status", "created_at", "delivered_at", "confirmed_at",
              "retry_count", "last_error"}  # fmt: skip

    def test_it_shows_every_field_through_each_state_and_never_the_share(self, client, alice, bob, delivery):
        seen = []
        for step in ("deposit", "request", "confirm"):
            if step == "request":
                delivered(client, bob, delivery)
            if step == "confirm":
                post(client, CONFIRM, confirm_body(delivery.pk, SHARE_SHA), bob)
            data = client.get(STATUS.format(delivery.pk), **alice.auth()).json()["data"]
            assert set(data) == self.FIELDS
            assert data["client_id"] == str(bob.device_id)
            seen.append(data["status"])
        assert seen == ["PENDING", "DELIVERED", "CONFIRMED"]
        assert data["confirmed_at"] and data["delivered_at"]

    def test_another_book_cannot_see_it(self, client, neighbours, carol, delivery):
        response = client.get(STATUS.format(delivery.pk), **carol.auth())
        assert response.status_code == 404 and error_code(response) == "DELIVERY_NOT_FOUND"


class TestServerKey:
    def test_it_publishes_one_compressed_key_that_stays_the_same(self, client, db):
        first = client.get(SERVER_KEY).json()["data"]
        again = client.get(SERVER_KEY).json()["data"]
        assert first == again and len(bytes.fromhex(first["public_key"])) == 33
        assert first["fingerprint"] == hashlib.sha256(bytes.fromhex(first["public_key"])).hexdigest()


@pytest.fixture
def committed(client, family, alice, bob, django_capture_on_commit_callbacks):
    """Deposit and deliver SHARE with the on-commit work (the audit events) run."""
    with django_capture_on_commit_callbacks(execute=True):
        delivery = ShareDelivery.objects.get(pk=deposit(client, alice, bob, SHARE).json()["data"]["delivery_id"])
        delivered(client, bob, delivery)
    return delivery


class TestAudit:
    def test_each_state_change_is_audited_with_hashed_ids_and_no_share(self, bob, committed):
        events = list(AuditEvent.objects.filter(event_type=EventType.SHARE_DELIVERY_CHANGED))
        assert [(e.details["from"], e.details["to"]) for e in events] == [("", "PENDING"), ("PENDING", "DELIVERED")]
        for event in events:
            text = repr(event.__dict__)
            assert str(committed.pk) not in text and str(bob.device_id) not in text
            assert SHARE.hex() not in text and base64.b64encode(SHARE).decode() not in text


class TestMetrics:
    def test_transitions_retries_and_request_latency_are_counted(self, client, family, alice, bob, django_capture_on_commit_callbacks):
        from prometheus_client import REGISTRY

        names = [("homepocket_share_deliveries_total", {"status": "DELIVERED"}),
                 ("homepocket_share_delivery_retries_total", {"reason": "hash_mismatch"}),
                 ("homepocket_share_delivery_request_seconds_count", {"outcome": "delivered"})]  # fmt: skip
        before = [REGISTRY.get_sample_value(name, labels) or 0 for name, labels in names]
        with django_capture_on_commit_callbacks(execute=True):
            delivery = ShareDelivery.objects.get(pk=deposit(client, alice, bob, SHARE).json()["data"]["delivery_id"])
            delivered(client, bob, delivery)
            post(client, CONFIRM, confirm_body(delivery.pk, "0" * 64), bob)
        after = [REGISTRY.get_sample_value(name, labels) for name, labels in names]
        assert [a - b for a, b in zip(after, before)] == [1, 1, 1]
        assert "homepocket_share_deliveries_total" in client.get("/metrics").content.decode()
