"""The node-local hub: every relay socket of this process, fanned out to without the channel layer.

Channels' usual path (group_send → one channel per consumer → each consumer encodes its own copy)
saturated at ~6,500 deliveries/s per worker when measured (issue 7). Here a book has one
subscription per node (apps/relay/bus.py), a frame is decoded and encoded once on the node that
received it, and the same frame text is handed to each local socket of the book: an append to
that socket's bounded outbox, drained by the socket's own writer task.

Slow readers: an outbox holds at most RELAY_SOCKET_BUFFER_FRAMES frames and
RELAY_SOCKET_BUFFER_BYTES bytes. A frame that would pass either bound closes that socket with
4408 (SLOW_READER) and frees its outbox; the device reconnects and runs its sync step. Nothing
waits on a slow socket, so it never delays the book's other sockets, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from apps.relay import metrics
from apps.relay.bus import BusUnavailable, bus_create, bus_probe
from apps.relay.messages import (
    CloseCode,
    CrdtOperation,
    Presence,
    presence_encode,
    relayed_operation_parts,
    relayed_operation_seq,
    resync_required_encode,
)
from homepocket.drain import drain_active, drain_watchable

logger = logging.getLogger("homepocket.relay")

# How often a hub looks for the drain file of homepocket.server (a stat() call): sockets get their
# 1012 within this of SIGTERM, inside the supervisor's shortest drain (SOCKET_CLOSE_SECONDS).
DRAIN_POLL_SECONDS = 0.1

Send = Callable[[dict[str, Any]], Awaitable[None]]


class LocalSocket:
    """One WebSocket on this node: who it is, its bounded outbox, and the writer task draining it.

    Closing is the consumer's job (granian sends a close frame only once the app's pending
    receive() is cancelled), so close() records the code, drops the outbox, stops the writer and
    calls `on_close` for the consumer to send the close frame.
    """

    __slots__ = (
        "socket_id", "book_id", "device_id", "_send", "_queue", "_bytes", "_waiter", "_task", "on_close",
        "close_code", "close_reason", "__weakref__",
    )  # fmt: skip

    def __init__(self, *, book_id: str, device_id: str, send: Send, on_close: Callable[[], None]) -> None:
        self.socket_id = uuid.uuid4().hex
        self.book_id = book_id
        self.device_id = device_id
        self._send = send
        self._queue: deque[str] = deque()
        self._bytes = 0
        self._waiter: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self.on_close = on_close
        self.close_code: int | None = None
        self.close_reason = ""

    def start(self) -> None:
        """Start draining (after the socket is accepted: nothing may be sent before)."""
        if self.close_code is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    def push(self, text: str) -> bool:
        """Queue a frame; False when the socket is closing or this frame overflowed it (then it closes)."""
        if self.close_code is not None:
            return False
        queue = self._queue
        if len(queue) >= settings.RELAY_SOCKET_BUFFER_FRAMES or self._bytes + len(text) > settings.RELAY_SOCKET_BUFFER_BYTES:
            metrics.SLOW_READER_CLOSES.inc()
            logger.info("relay slow reader closed", extra={"event": "relay_slow_reader", "queued": len(queue)})
            self.close(CloseCode.SLOW_READER, "send buffer overflow")
            return False
        queue.append(text)
        self._bytes += len(text)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def close(self, code: int, reason: str = "") -> None:
        """Close with a code: queued frames are dropped and the consumer sends the close frame."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = int(code), reason
        self._queue.clear()
        self._bytes = 0
        self.stop()
        self.on_close()

    def catch_up(self, frames: list[str]) -> None:
        """Put backlog frames ahead of what arrived live since the socket joined (not started yet).

        Live frames already queued that the backlog also holds (seq up to the backlog's last) are
        dropped: the socket subscribed before the backlog was read, so it may hold both copies.
        """
        seqs = [s for s in map(relayed_operation_seq, frames) if s is not None]
        last = max(seqs, default=0)
        live = [t for t in self._queue if (relayed_operation_seq(t) or last + 1) > last]
        self._queue = deque([*frames, *live])
        self._bytes = sum(map(len, self._queue))

    def stop(self) -> None:
        """Stop the writer (also one stuck on a reader that does not read)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _drain(self) -> None:
        queue, send, loop = self._queue, self._send, asyncio.get_running_loop()
        try:
            while True:
                while queue:
                    text = queue.popleft()
                    self._bytes -= len(text)
                    await send({"type": "websocket.send", "text": text})
                self._waiter = loop.create_future()
                await self._waiter
                self._waiter = None
        except asyncio.CancelledError:
            raise
        except Exception:  # the connection went away under the send; the consumer's disconnect cleans up
            return


class _Room:
    """This node's sockets of one book, and the book's subscription."""

    __slots__ = ("sockets", "pending", "subscribed")

    def __init__(self, subscribed: asyncio.Task) -> None:
        self.sockets: set[LocalSocket] = set()
        self.pending = 0
        self.subscribed = subscribed


class RelayHub:
    """The relay of one event loop (one server process): rooms by book, the bus, presence upkeep."""

    def __init__(self, bus) -> None:
        self.bus = bus
        self._rooms: dict[str, _Room] = {}
        self._tasks: list[asyncio.Task] = []
        self._revocation_channel: str | None = None

    @property
    def up(self) -> bool:
        return self.bus.up

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.bus.start(self._deliver, self._bus_lost, self._revocations_heard)
        self._tasks = [loop.create_task(self._presence_upkeep(), name="relay-presence")]
        if drain_watchable():
            self._tasks.append(loop.create_task(self._drain_watch(), name="relay-drain"))
        if not self.bus.hears_revocations:
            self._tasks.append(loop.create_task(self._revocations_listen(), name="relay-revocations"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=2)
        for socket in self.sockets():
            socket.close(CloseCode.GOING_AWAY, "server shutting down")
        await self.bus.stop()

    def sockets(self) -> list[LocalSocket]:
        return [socket for room in self._rooms.values() for socket in room.sockets]

    # --- sockets joining and leaving ----------------------------------------------------------

    async def join(self, socket: LocalSocket) -> list[str]:
        """Add a socket to its book on this node; returns the other devices online. BusUnavailable if Redis is down."""
        book_id = socket.book_id
        room = self._rooms.get(book_id)
        if room is None:
            room = _Room(asyncio.get_running_loop().create_task(self.bus.subscribe(book_id)))
            self._rooms[book_id] = room
        room.pending += 1
        try:
            await asyncio.shield(room.subscribed)
            room.sockets.add(socket)
        finally:
            room.pending -= 1
            self._room_release(book_id, room)
        metrics.SOCKETS.inc()
        online = presence_encode(Presence(device_id=socket.device_id, state="online"))
        try:
            return await self.bus.presence_join(book_id=book_id, device_id=socket.device_id, socket_id=socket.socket_id, online_frame=online)
        except BusUnavailable:
            self.leave_local(socket)
            raise

    def leave_local(self, socket: LocalSocket) -> bool:
        """Remove a socket from this node's rooms; False if it was not in one (already dropped)."""
        socket.stop()
        room = self._rooms.get(socket.book_id)
        if room is None or socket not in room.sockets:
            return False
        room.sockets.discard(socket)
        metrics.SOCKETS.dec()
        self._room_release(socket.book_id, room)
        return True

    async def leave(self, socket: LocalSocket) -> None:
        """A socket closed: drop it here and, if it was the device's last, announce it offline."""
        self.leave_local(socket)
        offline = presence_encode(Presence(device_id=socket.device_id, state="offline"))
        try:
            await self.bus.presence_leave(book_id=socket.book_id, device_id=socket.device_id, socket_id=socket.socket_id, offline_frame=offline)
        except BusUnavailable:
            pass  # Redis is down: the entry expires after RELAY_PRESENCE_TTL_SECONDS

    def _room_release(self, book_id: str, room: _Room) -> None:
        if room.sockets or room.pending or self._rooms.get(book_id) is not room:
            return
        del self._rooms[book_id]
        if room.subscribed.done() and room.subscribed.exception() is None:
            asyncio.get_running_loop().create_task(self.bus.unsubscribe(book_id))

    # --- frames ----------------------------------------------------------------------------

    async def relay(self, *, book_id: str, device_id: str, operation: CrdtOperation, relay_timestamp: int, count_recipients: bool = False) -> tuple[int, int]:
        """Publish an operation to the book's other devices on every node; returns (seq, sockets reached)."""
        head, tail = relayed_operation_parts(operation=operation, device_id=device_id, relay_timestamp=relay_timestamp)
        metrics.OPERATIONS.inc()
        return await self.bus.operation_publish(
            book_id=book_id, device_id=device_id, head=head, tail=tail, now_ms=relay_timestamp, count_recipients=count_recipients
        )

    def _deliver(self, book_id: str, sender_device_id: str, text: str) -> None:
        room = self._rooms.get(book_id)
        if room is None:
            return
        delivered = 0
        for socket in room.sockets:
            if socket.device_id != sender_device_id and socket.push(text):
                delivered += 1
        if delivered:
            metrics.DELIVERIES.inc(delivered)

    async def catch_up(self, socket: LocalSocket, since: int) -> list[str]:
        """What a device reconnecting with ?since=<seq> missed (other devices' frames, in seq order),
        or [resync_required] when the backlog cannot say (off, trimmed, expired, or the seq restarted)."""
        current, entries = await self.bus.backlog_read(socket.book_id)
        if current == since:
            return []
        cutoff = int(time.time() * 1000) - settings.RELAY_BACKLOG_SECONDS * 1000
        kept = [(relayed_operation_seq(e.text), e) for e in entries if e.relay_ms >= cutoff]
        if since > current or not kept or kept[0][0] > since + 1:
            return [resync_required_encode()]
        return [e.text for seq, e in kept if seq > since and e.device_id != socket.device_id]

    # --- draining, faults and revocations -------------------------------------------------------

    def drain(self) -> int:
        """The node is draining: close every socket with 1012 so its device reconnects to another node."""
        closing = self.sockets()
        for socket in closing:
            socket.close(CloseCode.SERVICE_RESTART, "server restarting, reconnect")
        return len(closing)

    async def _drain_watch(self) -> None:
        while not drain_active():
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        count = self.drain()
        logger.info("relay draining", extra={"event": "relay_drain", "count": count})

    def _bus_lost(self) -> None:
        """Redis went away: frames published meanwhile would miss this node, so close every socket
        with a retry-able code; devices reconnect once /ready is green and run their sync step."""
        rooms, self._rooms = self._rooms, {}
        for room in rooms.values():
            for socket in room.sockets:
                metrics.SOCKETS.dec()
                socket.close(CloseCode.TRY_AGAIN_LATER, "relay unavailable, retry")

    def devices_revoked(self, device_ids: list[str], reason: str = "device revoked") -> int:
        """Close this node's sockets of revoked devices, or of devices whose tokens were revoked (INVALID_TOKEN). Returns how many."""
        revoked = set(device_ids)
        closing = [socket for socket in self.sockets() if socket.device_id in revoked]
        for socket in closing:
            socket.close(CloseCode.INVALID_TOKEN, reason)
        return len(closing)

    def _revocations_heard(self, device_ids: list[str], reason: str = "device revoked") -> None:
        count = self.devices_revoked(device_ids, reason)
        if count:
            logger.info("relay closed revoked sockets", extra={"event": "relay_revoked_closed", "count": count})

    async def _revocations_listen(self) -> None:
        """The embedded mode: hear device revocations on the in-memory channel layer."""
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        while True:
            try:
                self._revocation_channel = await layer.new_channel("relay-revocations.")
                await self._revocations_join()
                while True:
                    message = await layer.receive(self._revocation_channel)
                    self._revocations_heard([str(d) for d in message.get("device_ids", [])], str(message.get("reason") or "device revoked"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("relay revocation listener failed", extra={"event": "relay_revocations_failed", "error": type(exc).__name__})
                await asyncio.sleep(1)

    async def _revocations_join(self) -> None:
        from channels.layers import get_channel_layer

        from apps.pairing.services import DEVICE_REVOKED_GROUP

        if self._revocation_channel is not None:
            await get_channel_layer().group_add(DEVICE_REVOKED_GROUP, self._revocation_channel)

    async def _presence_upkeep(self) -> None:
        """Refresh this node's presence entries well before they expire (and its revocation membership)."""
        while True:
            await asyncio.sleep(settings.RELAY_PRESENCE_TTL_SECONDS / 3)
            try:
                # The in-memory layer forgets group members after a day: join again now and then.
                await self._revocations_join()
            except Exception as exc:
                logger.warning("relay revocation join failed", extra={"event": "relay_revocations_failed", "error": type(exc).__name__})
            entries = [(s.book_id, s.socket_id, s.device_id) for s in self.sockets()]
            if not entries:
                continue
            try:
                await self.bus.presence_refresh(entries)
            except Exception as exc:
                logger.warning("relay presence refresh failed", extra={"event": "relay_presence_failed", "error": type(exc).__name__})


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = weakref.WeakKeyDictionary()


async def relay_hub() -> RelayHub:
    """The hub of the running event loop, started on first use."""
    loop = asyncio.get_running_loop()
    starting = _hubs.get(loop)
    if starting is None or (starting.done() and starting.exception() is not None):
        starting = loop.create_task(_hub_start(), name="relay-hub-start")
        _hubs[loop] = starting
    return await asyncio.shield(starting)


async def _hub_start() -> RelayHub:
    hub = RelayHub(bus_create())
    await hub.start()
    return hub


async def relay_hub_stop() -> None:
    """Stop the running loop's hub, if one started (the server's lifespan shutdown, tests)."""
    starting = _hubs.pop(asyncio.get_running_loop(), None)
    if starting is not None and starting.done() and starting.exception() is None:
        await starting.result().stop()


async def relay_ready_check() -> None:
    """For /ready: raise unless this loop's hub (or, before one started, Redis) answers."""
    starting = _hubs.get(asyncio.get_running_loop())
    if starting is not None:
        hub = await asyncio.shield(starting)
        await hub.bus.ping()
    elif settings.REDIS_URL:
        await bus_probe()
