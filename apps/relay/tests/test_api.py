"""The relay's HTTP side in process: relay/send, sync_status and tickets, refusals changing nothing."""

from __future__ import annotations

import base64
from unittest import mock

import pytest

from apps.quotas.models import Policy
from apps.quotas.policies import policies_forget

from apps.relay import bus, services


@pytest.fixture(autouse=True)
def fresh_relay_state():
    """Relay counters live in the process (embedded) or under this run's Redis prefix (distributed)."""
    bus._local_books.clear()
    yield
    bus._local_books.clear()


def send(client, persona, **overrides):
    body = {"book_id": str(persona.book_id), "type": "crdt_operation", "payload": "aGVsbG8=", "timestamp": 1700000000123}
    body.update(overrides)
    return client.post("/api/v1/relay/send", body, content_type="application/json", **persona.auth())


def operation_count(client, persona) -> int:
    return client.get(f"/api/v1/books/{persona.book_id}/sync_status", **persona.auth()).json()["data"]["operation_count"]


@pytest.mark.django_db
def test_relay_send_answers_the_seq_and_counts_the_operation(client, family, alice):
    first = send(client, alice).json()["data"]
    second = send(client, alice).json()["data"]
    assert second["seq"] == first["seq"] + 1
    assert first["delivered_to"] == 0  # nobody has a socket open
    assert operation_count(client, alice) == second["seq"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"payload": "not base64!"}, id="payload-not-base64"),
        pytest.param({"payload": ""}, id="payload-empty"),
        pytest.param({"timestamp": "yesterday"}, id="timestamp-not-a-number"),
        pytest.param({"type": "presence"}, id="other-type"),
        pytest.param({"book_id": "not-a-uuid"}, id="book-id-malformed"),
    ],
)
def test_relay_send_refuses_bad_input_with_invalid_argument_and_counts_nothing(client, family, alice, overrides):
    response = send(client, alice, **overrides)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert operation_count(client, alice) == 0


@pytest.mark.django_db
def test_relay_send_refuses_a_payload_over_256_kib_with_payload_too_large(client, family, alice):
    response = send(client, alice, payload=base64.b64encode(b"x" * 200 * 1024).decode())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert operation_count(client, alice) == 0


@pytest.mark.django_db
def test_relay_send_to_another_book_is_forbidden(client, family, alice, neighbours, carol):
    response = send(client, alice, book_id=str(carol.book_id))
    assert response.status_code == 403
    assert operation_count(client, carol) == 0


@pytest.mark.django_db
def test_relay_send_past_the_books_daily_quota_answers_429_and_relays_nothing(client, family, alice, bob):
    Policy.objects.filter(scope="relay.send", plan="free").update(limit=2)
    policies_forget()
    responses = [send(client, persona) for persona in (alice, bob, alice)]  # counted per book
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert [r["X-RateLimit-Remaining"] for r in responses] == ["1", "0", "0"]
    assert responses[2].json()["error"]["details"]["policy"] == "relay.send"
    assert operation_count(client, alice) == 2


@pytest.mark.django_db
def test_sync_status_of_another_book_is_forbidden(client, family, alice, neighbours, carol):
    response = client.get(f"/api/v1/books/{carol.book_id}/sync_status", **alice.auth())
    assert response.status_code == 403


@pytest.mark.django_db
def test_sync_status_lists_every_active_device_with_no_content(client, family, alice, bob):
    send(client, alice)
    data = client.get(f"/api/v1/books/{alice.book_id}/sync_status", **bob.auth()).json()["data"]
    assert {d["device_id"] for d in data["devices"]} == {str(alice.device_id), str(bob.device_id)}
    assert data["devices_online"] == []
    assert "aGVsbG8=" not in str(data)


@pytest.mark.django_db
def test_a_ticket_names_its_device_and_works_once(client, family, alice):
    response = client.post("/api/v1/relay/ticket", **alice.auth())
    assert response.status_code == 201
    ticket = response.json()["data"]["ticket"]
    assert services._ticket_redeem(ticket).device_id == alice.device_id
    with pytest.raises(services.TokenRefused):
        services._ticket_redeem(ticket)
