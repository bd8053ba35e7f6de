"""The optional encrypted backlog: catch-up after ?since=<seq>, or resync_required when it cannot."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from apps.relay import bus
from apps.relay.bus import LocalBus
from apps.relay.hub import LocalSocket, RelayHub
from apps.relay.messages import CrdtOperation, relayed_operation_seq

pytestmark = pytest.mark.anyio
RESYNC = '{"type":"resync_required"}'


@pytest.fixture(autouse=True)
def fresh_local_books():
    bus._local_books.clear()
    yield
    bus._local_books.clear()


async def hub_with_operations(count: int, *, sender: str = "alice", relay_ms: int | None = None) -> RelayHub:
    import time

    hub = RelayHub(LocalBus())
    stamp = relay_ms if relay_ms is not None else int(time.time() * 1000)
    for index in range(count):
        await hub.relay(book_id="family", device_id=sender, operation=CrdtOperation("AAAA", index), relay_timestamp=stamp)
    return hub


def socket_of(device: str) -> LocalSocket:
    async def send(message):
        pass

    return LocalSocket(book_id="family", device_id=device, send=send, on_close=lambda: None)


def seqs(frames: list[str]) -> list[int | None]:
    return [relayed_operation_seq(frame) for frame in frames]


@override_settings(RELAY_BACKLOG_FRAMES=0)
async def test_with_the_backlog_off_a_device_behind_is_told_to_resync():
    hub = await hub_with_operations(3)
    assert await hub.catch_up(socket_of("bob"), 1) == [RESYNC]


@override_settings(RELAY_BACKLOG_FRAMES=0)
async def test_with_the_backlog_off_a_device_up_to_date_gets_nothing():
    hub = await hub_with_operations(3)
    assert await hub.catch_up(socket_of("bob"), 3) == []
    assert bus._local_books["family"].backlog == bus.deque()  # nothing stored


@override_settings(RELAY_BACKLOG_FRAMES=10)
async def test_a_device_catches_up_with_the_frames_after_its_seq_in_order():
    hub = await hub_with_operations(5)
    frames = await hub.catch_up(socket_of("bob"), 2)
    assert seqs(frames) == [3, 4, 5]
    assert json.loads(frames[0])["device_id"] == "alice"


@override_settings(RELAY_BACKLOG_FRAMES=10)
async def test_the_catch_up_leaves_out_the_devices_own_frames():
    hub = await hub_with_operations(4, sender="bob")
    assert await hub.catch_up(socket_of("bob"), 1) == []


@override_settings(RELAY_BACKLOG_FRAMES=3)
async def test_a_gap_older_than_the_backlog_is_told_to_resync():
    hub = await hub_with_operations(6)  # keeps seq 4, 5, 6
    assert await hub.catch_up(socket_of("bob"), 2) == [RESYNC]
    assert seqs(await hub.catch_up(socket_of("bob"), 3)) == [4, 5, 6]


@override_settings(RELAY_BACKLOG_FRAMES=10, RELAY_BACKLOG_SECONDS=60)
async def test_frames_older_than_the_backlog_age_do_not_count():
    import time

    hub = await hub_with_operations(3, relay_ms=int(time.time() * 1000) - 61_000)
    assert await hub.catch_up(socket_of("bob"), 1) == [RESYNC]


@override_settings(RELAY_BACKLOG_FRAMES=10)
async def test_a_seq_from_before_a_relay_restart_is_told_to_resync():
    hub = await hub_with_operations(2)
    assert await hub.catch_up(socket_of("bob"), 50) == [RESYNC]


async def test_catch_up_frames_go_first_and_live_copies_of_them_are_dropped():
    socket = socket_of("bob")
    live = [f'{{"type":"crdt_operation","payload":"AA==","timestamp":1,"device_id":"a","relay_timestamp":1,"seq":{n}}}' for n in (4, 5, 6)]
    presence = '{"type":"presence","device_id":"a","state":"online"}'
    for text in (live[0], presence, live[1], live[2]):
        socket.push(text)
    backlog = [f'{{"type":"crdt_operation","payload":"AA==","timestamp":1,"device_id":"a","relay_timestamp":1,"seq":{n}}}' for n in (3, 4, 5)]
    socket.catch_up(backlog)
    assert [relayed_operation_seq(t) for t in socket._queue] == [3, 4, 5, None, 6]
