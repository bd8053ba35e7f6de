"""The node-local hub: fan-out without echo, and the bounded outbox of a slow reader."""

from __future__ import annotations

import asyncio

import pytest
from django.test import override_settings

from apps.relay import bus
from apps.relay.bus import LocalBus
from apps.relay.hub import LocalSocket, RelayHub
from apps.relay.messages import CloseCode, CrdtOperation

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def fresh_local_books():
    """The embedded bus keeps books in the process; each test starts without any."""
    bus._local_books.clear()
    yield
    bus._local_books.clear()


class Peer:
    """A socket's far end: records what the writer sends; `stuck` makes it never finish a send."""

    def __init__(self, stuck: bool = False):
        self.sent: list[dict] = []
        self.stuck = stuck
        self.closed = 0

    async def send(self, message):
        if self.stuck:
            await asyncio.Event().wait()
        self.sent.append(message)

    def on_close(self):
        self.closed += 1


def socket_for(book: str, device: str, peer: Peer) -> LocalSocket:
    return LocalSocket(book_id=book, device_id=device, send=peer.send, on_close=peer.on_close)


async def started_hub() -> RelayHub:
    hub = RelayHub(LocalBus())
    await hub.start()
    return hub


async def test_a_frame_reaches_every_other_device_of_the_book_and_not_the_sender():
    hub = await started_hub()
    peers = {name: Peer() for name in ("alice", "bob", "carol", "outsider")}
    sockets = {name: socket_for("other-book" if name == "outsider" else "family", name, peer) for name, peer in peers.items()}
    for socket in sockets.values():
        await hub.join(socket)
        socket.start()
    seq, _ = await hub.relay(book_id="family", device_id="alice", operation=CrdtOperation("AAAA", 1), relay_timestamp=5)
    await asyncio.sleep(0.01)
    operations = {name: [m for m in peer.sent if '"crdt_operation"' in m["text"]] for name, peer in peers.items()}
    assert len(operations["bob"]) == len(operations["carol"]) == 1
    assert operations["alice"] == [] and operations["outsider"] == []
    await hub.stop()


@override_settings(RELAY_SOCKET_BUFFER_FRAMES=4, RELAY_SOCKET_BUFFER_BYTES=10**6)
async def test_a_slow_reader_is_closed_with_4408_once_its_outbox_is_full_and_others_still_get_frames():
    hub = await started_hub()
    slow, quick = Peer(stuck=True), Peer()
    slow_socket, quick_socket = socket_for("family", "slow", slow), socket_for("family", "quick", quick)
    for socket in (slow_socket, quick_socket):
        await hub.join(socket)
        socket.start()
    for index in range(10):
        await hub.relay(book_id="family", device_id="sender", operation=CrdtOperation("AAAA", index), relay_timestamp=index)
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert slow_socket.close_code == CloseCode.SLOW_READER
    assert slow.closed == 1
    assert slow_socket._bytes == 0 and not slow_socket._queue  # its outbox is freed
    assert len([m for m in quick.sent if '"crdt_operation"' in m["text"]]) == 10
    await hub.stop()


@override_settings(RELAY_SOCKET_BUFFER_FRAMES=1000, RELAY_SOCKET_BUFFER_BYTES=100)
async def test_the_byte_bound_closes_a_socket_before_the_frame_bound():
    socket = socket_for("family", "slow", Peer(stuck=True))
    assert socket.push("x" * 60) is True
    assert socket.push("x" * 60) is False
    assert socket.close_code == CloseCode.SLOW_READER


async def test_a_revocation_closes_every_socket_of_that_device_only():
    hub = await started_hub()
    bob1, bob2, alice = Peer(), Peer(), Peer()
    sockets = [socket_for("family", "bob", bob1), socket_for("family", "bob", bob2), socket_for("family", "alice", alice)]
    for socket in sockets:
        await hub.join(socket)
    assert hub.devices_revoked(["bob"]) == 2
    assert [s.close_code for s in sockets] == [CloseCode.INVALID_TOKEN, CloseCode.INVALID_TOKEN, None]
    await hub.stop()


async def test_losing_the_bus_closes_every_socket_with_a_retryable_code():
    hub = await started_hub()
    sockets = [socket_for("family", name, Peer()) for name in ("alice", "bob")]
    for socket in sockets:
        await hub.join(socket)
    hub._bus_lost()
    assert {s.close_code for s in sockets} == {CloseCode.TRY_AGAIN_LATER}
    assert hub.sockets() == []
    await hub.stop()
