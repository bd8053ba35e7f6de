"""SigningClient against the documented wire format: UNLOCK_REQUIRED retried within 200 ms."""

from __future__ import annotations

import json
import uuid

import pytest

from homepocket_client import ServiceUnavailable, SigningClient
from homepocket_client import signing as signing_module
from homepocket_client.tests.fake_server import envelope_error, envelope_success, json_response

KEY_ID = uuid.UUID("5e5e5e5e-0000-4000-8000-00000000c0de")
SIGNED = {"signature": "11" * 64, "recovery_id": 1, "der": "3006020101020101"}


class Clock:
    """time.monotonic and time.sleep of the signing module: sleeping moves the clock, instantly."""

    def __init__(self):
        self.t = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(signing_module.time, "monotonic", c.monotonic)
    monkeypatch.setattr(signing_module.time, "sleep", c.sleep)
    return c


def _script(server, answers):
    queue = list(answers)
    server.answer = lambda request: queue.pop(0)


def _unlock(ms):
    return json_response(503, envelope_error("UNLOCK_REQUIRED", details={"retry_after_ms": ms}), {"Retry-After": f"{ms / 1000:.3f}"})


def test_it_retries_unlock_required_after_the_servers_wait_and_returns_the_signature(client, server, clock):
    _script(server, [_unlock(80), json_response(200, envelope_success(SIGNED))])
    sig = SigningClient(client, api_key="hp_a_b").sign(KEY_ID, b"\x01" * 32)
    assert sig.recovery_id == 1 and sig.signature == b"\x11" * 64
    assert clock.slept == [0.08]
    assert len(server.requests) == 2
    assert server.last.headers["Authorization"] == "Api-Key hp_a_b"
    assert json.loads(server.last.content) == {"key_id": str(KEY_ID), "digest": "01" * 32}


def test_it_gives_up_when_the_next_wait_would_pass_the_200_ms_budget(client, server, clock):
    _script(server, [_unlock(120), _unlock(120)])
    with pytest.raises(ServiceUnavailable) as raised:
        SigningClient(client, api_key="hp_a_b").sign(KEY_ID, b"\x01" * 32)
    assert raised.value.code == "UNLOCK_REQUIRED"
    assert clock.slept == [0.12] and len(server.requests) == 2


def test_it_does_not_retry_retry_later(client, server, clock):
    _script(server, [json_response(503, envelope_error("RETRY_LATER", details={"retry_after_ms": 300}))])
    with pytest.raises(ServiceUnavailable) as raised:
        SigningClient(client, api_key="hp_a_b").sign(KEY_ID, b"\x01" * 32)
    assert raised.value.code == "RETRY_LATER" and clock.slept == []


def test_it_refuses_a_message_that_is_not_a_32_byte_digest_before_sending(client, server, clock):
    with pytest.raises(ValueError):
        SigningClient(client, api_key="hp_a_b").sign(KEY_ID, b"hello")
    assert server.requests == []
