"""The relay's frames round-trip through their one encode and one decode each."""

from __future__ import annotations

import json

import pytest

from apps.relay import messages
from apps.relay.messages import CrdtOperation, FrameError, Ping, Pong, Presence, RelayedOperation


def test_a_crdt_operation_round_trips():
    frame = CrdtOperation(payload="aGVsbG8gd29ybGQ=", timestamp=1700000000123)
    assert messages.client_frame_decode(messages.crdt_operation_encode(frame)) == frame


def test_a_ping_round_trips():
    assert messages.client_frame_decode(messages.ping_encode()) == Ping()


def test_a_relayed_operation_round_trips():
    frame = RelayedOperation(payload="AAEC", timestamp=1.5, device_id="d-1", relay_timestamp=1700000000999, seq=42)
    assert messages.server_frame_decode(messages.relayed_operation_encode(frame)) == frame


def test_presence_and_pong_round_trip():
    frame = Presence(device_id="d-2", state="offline")
    assert messages.server_frame_decode(messages.presence_encode(frame)) == frame
    assert messages.server_frame_decode(messages.pong_encode()) == Pong()


def test_the_relayed_frame_carries_the_payload_string_unchanged():
    payload = "+/+/AAAA" * 10
    head, tail = messages.relayed_operation_parts(operation=CrdtOperation(payload, 7), device_id="d", relay_timestamp=1)
    assert f'"payload":"{payload}"' in head
    assert json.loads(f"{head}9{tail}")["seq"] == 9


def test_a_client_cannot_choose_its_device_id_or_seq():
    text = json.dumps({"type": "crdt_operation", "payload": "AAAA", "timestamp": 1, "device_id": "forged", "seq": 99})
    frame = messages.client_frame_decode(text)
    assert frame == CrdtOperation(payload="AAAA", timestamp=1)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"type": "crdt_operation", "payload": "", "timestamp": 1}',
        '{"type": "crdt_operation", "payload": "a b", "timestamp": 1}',
        '{"type": "crdt_operation", "payload": "AAAA", "timestamp": true}',
        '{"type": "crdt_operation", "payload": "AAAA"}',
        '{"type": "presence", "device_id": "x", "state": "online"}',
    ],
)
def test_it_refuses_frames_that_are_not_client_frames(text):
    with pytest.raises(FrameError):
        messages.client_frame_decode(text)
