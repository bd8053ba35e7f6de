"""POST /backup/delivery/request through both of its paths: the lean ASGI route and Django + DRF.

Each test runs with the lean route on and off (conftest.asgi_client); the last ones send the
same requests down both paths in one test and compare the answers field by field.
"""

from __future__ import annotations

import json
import logging
import os
import uuid

import pytest
from coincurve import PrivateKey
from django.utils import timezone

from apps.audit.models import AuditEvent, EventType
from apps.backups.delivery.models import DeliveryStatus, ShareDelivery, ShareDeliveryRequest
from apps.backups.tests.asgi_client import AsgiClient
from apps.backups.tests.delivery_calls import REQUEST, deposit, post, request_body
from apps.pairing.models import Device
from apps.quotas.models import Policy
from apps.quotas.policies import policies_forget
from homepocket_client.tokens import device_token_mint

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(asgi_client):
    return asgi_client


@pytest.fixture
def delivery(client, family, alice, bob) -> ShareDelivery:
    response = deposit(client, alice, bob, os.urandom(100))
    assert response.status_code == 201, response.content
    return ShareDelivery.objects.get(pk=response.json()["data"]["delivery_id"])


def ask(client, bob, delivery, **extra):
    return client.post(REQUEST, json.dumps(request_body(delivery.backup_id, PrivateKey())), **{**bob.auth(), **extra})


def error(response) -> tuple[int, str, dict]:
    body = response.json()
    return response.status_code, body["error"]["code"], body["error"]["details"]


class TestAuthentication:
    def test_a_device_revoked_after_its_last_request_gets_nothing(self, client, bob, delivery):
        assert ask(client, bob, delivery).status_code == 200  # the lean route now remembers bob's row
        Device.objects.filter(pk=bob.device_id).update(revoked_at=timezone.now())
        response = ask(client, bob, delivery)
        assert error(response) == (401, "INVALID_TOKEN", {"reason": "device_revoked"})
        assert ShareDeliveryRequest.objects.count() == 1
        assert AuditEvent.objects.filter(event_type=EventType.TOKEN_REFUSED, details__reason="device_revoked").count() == 1

    def test_a_token_issued_before_its_devices_cut_off_gets_nothing_while_the_row_is_remembered(self, client, bob, delivery):
        assert ask(client, bob, delivery).status_code == 200  # the lean route now remembers bob's row
        cut_off = timezone.now().replace(microsecond=0) + timezone.timedelta(seconds=5)
        # Another process's bump (manage.py revoke_tokens): this one's memory is not told.
        Device.objects.filter(pk=bob.device_id).update(tokens_valid_after=cut_off)
        response = ask(client, bob, delivery)  # a token signed now, before the cut-off
        code, reason = error(response)[:2], error(response)[2]["reason"]
        assert (code, reason) == ((401, "INVALID_TOKEN"), "token_revoked")
        assert ShareDeliveryRequest.objects.count() == 1

    def test_a_revoked_device_with_a_bad_body_is_refused_as_revoked(self, client, bob, delivery):
        assert ask(client, bob, delivery).status_code == 200
        Device.objects.filter(pk=bob.device_id).update(revoked_at=timezone.now())
        response = client.post(REQUEST, json.dumps({"nonce": "x"}), **bob.auth())
        assert error(response) == (401, "INVALID_TOKEN", {"reason": "device_revoked"})

    def test_a_token_for_another_book_is_forbidden(self, client, neighbours, bob, delivery):
        token = device_token_mint(bob.key, device_id=bob.device_id, book_id=neighbours.pk, lifetime_seconds=60)
        response = ask(client, bob, delivery, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert error(response) == (403, "FORBIDDEN", {"reason": "book_mismatch"})

    def test_an_unknown_device_is_refused(self, client, family, delivery):
        from tests.fixtures import Persona

        stranger = Persona.new("stranger")
        stranger.book_id = family.pk
        response = ask(client, stranger, delivery)
        assert error(response) == (401, "INVALID_TOKEN", {"reason": "unknown_device"})

    def test_no_token_is_refused_with_a_bearer_challenge(self, client, delivery):
        response = client.post(REQUEST, json.dumps(request_body(delivery.backup_id, PrivateKey())))
        assert error(response) == (401, "INVALID_TOKEN", {})
        assert response["WWW-Authenticate"] == "Bearer"

    def test_an_api_key_is_not_a_device(self, client, delivery):
        response = client.post(REQUEST, json.dumps(request_body(delivery.backup_id, PrivateKey())), HTTP_AUTHORIZATION="Api-Key hp_x_y")
        assert error(response)[:2] == (401, "INVALID_TOKEN")


class TestInput:
    def test_a_key_that_is_not_hex_names_the_field(self, client, bob, delivery):
        body = {**request_body(delivery.backup_id, PrivateKey()), "client_public_key": "zz" * 33}
        status, code, details = error(post(client, REQUEST, body, bob))
        assert (status, code, list(details["fields"])) == (400, "INVALID_ARGUMENT", ["client_public_key"])

    def test_every_bad_field_is_named_at_once(self, client, bob, delivery):
        body = {"backup_id": "nope", "client_public_key": "02", "timestamp": "soon", "nonce": "short"}
        status, code, details = error(post(client, REQUEST, body, bob))
        assert (status, code) == (400, "INVALID_ARGUMENT")
        assert sorted(details["fields"]) == ["backup_id", "client_public_key", "nonce", "timestamp"]

    def test_fields_the_serializer_accepts_are_accepted(self, client, bob, delivery):
        body = request_body(delivery.backup_id, PrivateKey())
        body = {**body, "backup_id": delivery.backup_id.hex, "timestamp": str(body["timestamp"]), "nonce": f" {body['nonce']} "}
        assert post(client, REQUEST, body, bob).status_code == 200

    def test_a_body_over_the_limit_is_refused_before_it_is_read(self, client, bob, delivery, settings):
        body = b'{"nonce": "' + b"a" * settings.MAX_REQUEST_BODY_BYTES + b'"}'
        response = client.post(REQUEST, body, **bob.auth())
        assert error(response)[:2] == (413, "PAYLOAD_TOO_LARGE")
        assert not ShareDeliveryRequest.objects.exists()

    def test_a_body_that_is_not_json_is_invalid_argument(self, client, bob, delivery):
        response = client.post(REQUEST, b"{not json", **bob.auth())
        assert error(response)[:2] == (400, "INVALID_ARGUMENT")
        assert response.json()["error"]["message"] == "The request body is not valid JSON."

    def test_another_content_type_is_unsupported(self, client, bob, delivery):
        response = client.post(REQUEST, b"backup_id=1", content_type="text/plain", **bob.auth())
        assert error(response)[:2] == (415, "UNSUPPORTED_MEDIA_TYPE")


class TestQuota:
    def test_requests_past_the_devices_limit_are_429_with_retry_after(self, client, bob, delivery):
        Policy.objects.filter(scope="backup.request", plan="free").update(limit=2)
        policies_forget()
        first, second, third = (ask(client, bob, delivery) for _ in range(3))
        assert [first.status_code, second.status_code] == [200, 200]
        assert first["X-RateLimit-Limit"] == "2" and first["X-RateLimit-Remaining"] == "1"
        assert second["X-RateLimit-Remaining"] == "0"
        status, code, details = error(third)
        assert (status, code, details["policy"]) == (429, "RATE_LIMIT_EXCEEDED", "backup.request")
        assert int(third["Retry-After"]) >= 1 and third["X-RateLimit-Remaining"] == "0"
        assert ShareDeliveryRequest.objects.count() == 2

    def test_answers_carry_the_rate_limit_headers(self, client, bob, delivery):
        response = ask(client, bob, delivery)
        assert response["X-RateLimit-Limit"] == "120" and int(response["X-RateLimit-Remaining"]) < 120


class TestEdges:
    def test_the_request_id_is_echoed_and_the_access_log_names_the_route(self, client, bob, delivery, caplog):
        with caplog.at_level(logging.INFO, logger="homepocket.access"):
            response = ask(client, bob, delivery, HTTP_X_REQUEST_ID="trace-abc-123")
        assert response["X-Request-ID"] == "trace-abc-123" and response.json()["meta"]["request_id"] == "trace-abc-123"
        assert response["API-Version"] == "1" and response["X-Content-Type-Options"] == "nosniff"
        lines = [r for r in caplog.records if r.name == "homepocket.access"]
        assert [(r.route, r.status) for r in lines][-1] == ("/api/v1/backup/delivery/request", 200)
        assert all(str(delivery.backup_id) not in r.getMessage() for r in lines)

    def test_requests_are_counted_by_route_and_status(self, client, bob, delivery):
        from prometheus_client import REGISTRY

        labels = {"method": "POST", "route": "/api/v1/backup/delivery/request", "status": "200"}
        before = REGISTRY.get_sample_value("homepocket_http_requests_total", labels) or 0
        ask(client, bob, delivery)
        assert REGISTRY.get_sample_value("homepocket_http_requests_total", labels) == before + 1


def test_the_lean_route_answers_without_django(monkeypatch, bob, delivery):
    from homepocket import asgi

    lean = AsgiClient(lean_route=True, monkeypatch=monkeypatch)
    deposit_free = ask(lean, bob, delivery)  # deposited above through Django; now Django is gone

    async def no_django(scope, receive, send):
        raise AssertionError("Django was asked")

    monkeypatch.setattr(asgi, "api_http", no_django)
    assert deposit_free.status_code == 200 and ask(lean, bob, delivery).status_code == 200


def _comparable(response) -> tuple:
    body = response.json()
    body.pop("meta")
    # Both requests count against one quota: the same headers, their values move between the two.
    moving = ("x-request-id", "content-length", "date", "x-ratelimit-remaining", "x-ratelimit-reset")
    headers = {name: value for name, value in response.headers.items() if name not in moving}
    return response.status_code, body, headers, sorted(response.headers)


@pytest.mark.parametrize(
    "case",
    ["no token", "bad signature", "not json", "bad fields", "stale", "unknown backup", "nonce reused", "state", "retry"],
)
def test_both_paths_answer_the_same(case, monkeypatch, family, alice, bob, clock):
    lean, django = AsgiClient(lean_route=True, monkeypatch=monkeypatch), AsgiClient(lean_route=False, monkeypatch=monkeypatch)
    delivery_id = deposit(django, alice, bob, b"share").json()["data"]["delivery_id"]
    delivery = ShareDelivery.objects.get(pk=delivery_id)
    key = PrivateKey()
    body = request_body(delivery.backup_id, key, timestamp=clock.timestamp())
    headers = bob.auth()
    if case == "no token":
        headers = {}
    elif case == "bad signature":
        headers = alice.auth(bob.book_token().rsplit(".", 1)[0] + "." + alice.book_token().rsplit(".", 1)[1])
    elif case == "not json":
        body = "{"
    elif case == "bad fields":
        body = {"backup_id": 7, "timestamp": -1}
    elif case == "stale":
        body = {**body, "timestamp": body["timestamp"] - 301}
    elif case == "unknown backup":
        body = {**body, "backup_id": str(uuid.uuid4())}
    elif case == "nonce reused":
        post(django, REQUEST, body, bob)
        body = {**body, "client_public_key": PrivateKey().public_key.format().hex()}
    elif case == "state":
        ShareDelivery.objects.filter(pk=delivery_id).update(status=DeliveryStatus.FAILED)
    elif case == "retry":
        first = post(django, REQUEST, body, bob)
        assert first.status_code == 200
    data = body if isinstance(body, str) else json.dumps(body)
    answers = [_comparable(client.post(REQUEST, data, **headers)) for client in (lean, django)]
    assert answers[0] == answers[1]
    if case == "retry":
        assert answers[0][1]["data"] == first.json()["data"]
    else:
        assert answers[0][0] >= 400
