"""The relay's shared state and cross-node delivery: the one owner of its Redis patterns (CONVENTIONS 10).

Two implementations of one interface, chosen by REDIS_URL (DESIGN "Two modes"):
- RedisBus (distributed): per book one pub/sub channel that every node with a socket of the
  book subscribes to once; the seq, the last relay time and the presence of sockets in Redis,
  changed only by the Lua scripts below, so two nodes never read-decide-write (CONVENTIONS 6).
- LocalBus (embedded, one process): the same in this process's memory.

Keys, all under CACHE_KEY_PREFIX (`<p>`):
  <p>:relay:book:<book_id>       pub/sub channel; a message is `<sender device id>|<frame text>`
  <p>:relay:seq:<book_id>        INCR counter: the seq of the book's last operation (= operations relayed)
  <p>:relay:last:<book_id>       epoch ms of the book's last operation
  <p>:relay:presence:<book_id>   hash: socket id → `<device id>|<expires epoch ms>`, refreshed by
                                 the socket's node, so a node that dies stops counting after the TTL
  <p>:relay:backlog:<book_id>    list (only with RELAY_BACKLOG_FRAMES > 0): the last N frames as
                                 `<relay epoch ms>|<sender device id>|<frame text>`
The seq, operation count and last relay time live as long as Redis keeps them: a Redis that
loses its data starts the books' seq again from 1 (docs/relay.md, "Sequence numbers").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from homepocket.redis_clients import async_client, sync_client

logger = logging.getLogger("homepocket.relay")

# A frame, as published: the sender's device id, a bar, then the frame's text. The receiving
# nodes split at the first bar instead of parsing JSON (one decode per frame per node).
SEPARATOR = "|"

Deliver = Callable[[str, str, str], None]  # (book_id, sender device id, frame text)


@dataclass(frozen=True)
class BookCounters:
    seq: int
    last_relay_ms: int | None
    online_device_ids: frozenset[str]


class BusUnavailable(Exception):
    """The shared state cannot be reached (Redis down); sockets close with TRY_AGAIN_LATER."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _presence_ttl_ms() -> int:
    return settings.RELAY_PRESENCE_TTL_SECONDS * 1000


# --- embedded: this process ---------------------------------------------------------------------


@dataclass(frozen=True)
class BacklogEntry:
    relay_ms: int
    device_id: str
    text: str


@dataclass
class _LocalBook:
    seq: int = 0
    last_relay_ms: int | None = None
    sockets: dict[str, str] = field(default_factory=dict)  # socket id → device id
    backlog: deque = field(default_factory=deque)


# One process serves the embedded mode, so its books live in this module for every event loop
# of the process (the sync_status view runs in a thread, the sockets in the server's loop).
_local_books: dict[str, _LocalBook] = {}


class LocalBus:
    """The embedded mode: seq, presence and delivery inside this process."""

    up = True
    hears_revocations = False  # the hub listens on the in-memory channel layer

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver, lost: Callable[[], None], revoked: Callable[[list[str], str], None] | None = None) -> None:
        self._deliver = deliver

    async def stop(self) -> None:
        self._deliver = None

    async def subscribe(self, book_id: str) -> None:
        return None

    async def unsubscribe(self, book_id: str) -> None:
        return None

    async def operation_publish(
        self, *, book_id: str, device_id: str, head: str, tail: str, now_ms: int, count_recipients: bool
    ) -> tuple[int, int]:
        book = _local_books.setdefault(book_id, _LocalBook())
        book.seq += 1
        book.last_relay_ms = now_ms
        text = f"{head}{book.seq}{tail}"
        if settings.RELAY_BACKLOG_FRAMES > 0:
            book.backlog.append(BacklogEntry(now_ms, device_id, text))
            while len(book.backlog) > settings.RELAY_BACKLOG_FRAMES:
                book.backlog.popleft()
        if self._deliver is not None:
            self._deliver(book_id, device_id, text)
        recipients = sum(1 for owner in book.sockets.values() if owner != device_id) if count_recipients else 0
        return book.seq, recipients

    async def presence_join(self, *, book_id: str, device_id: str, socket_id: str, online_frame: str) -> list[str]:
        book = _local_books.setdefault(book_id, _LocalBook())
        was_online = device_id in book.sockets.values()
        peers = sorted({owner for owner in book.sockets.values() if owner != device_id})
        book.sockets[socket_id] = device_id
        if not was_online and self._deliver is not None:
            self._deliver(book_id, device_id, online_frame)
        return peers

    async def presence_leave(self, *, book_id: str, device_id: str, socket_id: str, offline_frame: str) -> None:
        book = _local_books.get(book_id)
        if book is None or book.sockets.pop(socket_id, None) is None:
            return
        if device_id not in book.sockets.values() and self._deliver is not None:
            self._deliver(book_id, device_id, offline_frame)

    async def presence_refresh(self, entries: list[tuple[str, str, str]]) -> None:
        return None  # this process is the only node: its sockets are exactly the live ones

    async def backlog_read(self, book_id: str) -> tuple[int, list[BacklogEntry]]:
        book = _local_books.get(book_id)
        return (0, []) if book is None else (book.seq, list(book.backlog))

    async def ping(self) -> None:
        return None


def _local_counters(book_id: str) -> BookCounters:
    book = _local_books.get(book_id)
    if book is None:
        return BookCounters(seq=0, last_relay_ms=None, online_device_ids=frozenset())
    return BookCounters(book.seq, book.last_relay_ms, frozenset(book.sockets.values()))


# --- distributed: Redis -------------------------------------------------------------------------

# KEYS: seq, last, channel, presence, backlog. ARGV: head, tail, sender device, now ms, count
# recipients, backlog frames (0: off), backlog ttl ms.
# INCR and PUBLISH in one script: frames of a book reach every node in seq order.
_OPERATION_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
local frame = ARGV[1] .. seq .. ARGV[2]
redis.call('SET', KEYS[2], ARGV[4])
redis.call('PUBLISH', KEYS[3], ARGV[3] .. '|' .. frame)
if tonumber(ARGV[6]) > 0 then
  redis.call('RPUSH', KEYS[5], ARGV[4] .. '|' .. ARGV[3] .. '|' .. frame)
  redis.call('LTRIM', KEYS[5], -tonumber(ARGV[6]), -1)
  redis.call('PEXPIRE', KEYS[5], ARGV[7])
end
local recipients = 0
if ARGV[5] == '1' then
  local now = tonumber(ARGV[4])
  local entries = redis.call('HVALS', KEYS[4])
  for i = 1, #entries do
    local bar = string.find(entries[i], '|', 1, true)
    if string.sub(entries[i], 1, bar - 1) ~= ARGV[3] and tonumber(string.sub(entries[i], bar + 1)) >= now then
      recipients = recipients + 1
    end
  end
end
return {seq, recipients}
"""

# KEYS: presence, channel. ARGV: socket id, device id, now ms, ttl ms, online frame.
# Returns the other devices online; announces this one unless another socket of it already is.
_PRESENCE_JOIN = """
local now = tonumber(ARGV[3])
local entries = redis.call('HGETALL', KEYS[1])
local peers, seen, already = {}, {}, false
for i = 1, #entries, 2 do
  local value = entries[i + 1]
  local bar = string.find(value, '|', 1, true)
  local device = string.sub(value, 1, bar - 1)
  if tonumber(string.sub(value, bar + 1)) < now then
    redis.call('HDEL', KEYS[1], entries[i])
  elseif device == ARGV[2] then
    already = true
  elseif not seen[device] then
    seen[device] = true
    peers[#peers + 1] = device
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. (now + tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if not already then redis.call('PUBLISH', KEYS[2], ARGV[2] .. '|' .. ARGV[5]) end
return peers
"""

# KEYS: presence, channel. ARGV: socket id, device id, now ms, offline frame.
_PRESENCE_LEAVE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local now = tonumber(ARGV[3])
local entries = redis.call('HVALS', KEYS[1])
for i = 1, #entries do
  local bar = string.find(entries[i], '|', 1, true)
  if string.sub(entries[i], 1, bar - 1) == ARGV[2] and tonumber(string.sub(entries[i], bar + 1)) >= now then
    return 0
  end
end
redis.call('PUBLISH', KEYS[2], ARGV[2] .. '|' .. ARGV[4])
return 1
"""


def _revocation_channel() -> str:
    """The Redis channel the channel layer publishes pairing's revocation group on."""
    from channels.layers import get_channel_layer

    from apps.pairing.services import DEVICE_REVOKED_GROUP

    return get_channel_layer()._get_group_channel_name(DEVICE_REVOKED_GROUP)


def _key(kind: str, book_id: str) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:relay:{kind}:{book_id}"


def _publish_keys(book_id: str) -> list[str]:
    return [_key(kind, book_id) for kind in ("seq", "last", "book", "presence", "backlog")]


def _backlog_args() -> list[int]:
    return [settings.RELAY_BACKLOG_FRAMES, settings.RELAY_BACKLOG_SECONDS * 1000]


def _backlog_entry(raw: bytes) -> BacklogEntry:
    relay_ms, device_id, text = raw.decode().split(SEPARATOR, 2)
    return BacklogEntry(int(relay_ms), device_id, text)


class RedisBus:
    """The distributed mode: one pub/sub connection per node process, commands on a small pool."""

    def __init__(self) -> None:
        self._channel_prefix = _key("book", "")
        # Both from homepocket/redis_clients.py, with no silent retries: a lost connection must
        # surface, so that the hub closes its sockets (frames published while a node was not
        # subscribed would otherwise be lost unseen). Commands use a blocking pool: under load a
        # publish waits for one of its connections (each carries thousands of scripts a second)
        # instead of failing with MaxConnectionsError.
        self._commands = async_client("relay")
        self._listener = async_client("relay_pubsub", socket_timeout=None)
        self._pubsub = None
        self._scripts = {
            name: self._commands.register_script(source)
            for name, source in (
                ("publish", _OPERATION_PUBLISH),
                ("join", _PRESENCE_JOIN),
                ("leave", _PRESENCE_LEAVE),
            )
        }
        self._confirmations: dict[str, asyncio.Future] = {}
        self._pending: list[tuple[list, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self._publish_sha: str | None = None
        self._reader: asyncio.Task | None = None
        self._deliver: Deliver | None = None
        self._lost: Callable[[], None] | None = None
        self._revoked: Callable[[list[str], str], None] | None = None
        self._revocation_channel = _revocation_channel()
        self.up = False

    # The Redis bus hears device revocations itself (below); the local one leaves that to the hub.
    hears_revocations = True

    async def start(self, deliver: Deliver, lost: Callable[[], None], revoked: Callable[[list[str], str], None] | None = None) -> None:
        self._deliver, self._lost, self._revoked = deliver, lost, revoked
        try:
            await self._connect()
        except Exception as exc:  # Redis is down at start: the reader keeps trying, /ready says so
            logger.warning("relay bus unavailable at start", extra={"event": "relay_bus_down", "error": type(exc).__name__})
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="relay-bus-reader")

    async def _connect(self) -> None:
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except Exception:
                pass
        self._pubsub = self._listener.pubsub()
        # A channel of this node alone keeps the connection subscribed (and so readable) while
        # no book is; its confirmation proves the connection works.
        node_channel = f"{settings.CACHE_KEY_PREFIX}:relay:node:{id(self)}:{time.monotonic_ns()}"
        # Device revocations: pairing announces them with a channel-layer group_send, which the
        # Redis pub/sub layer PUBLISHes on the group's channel. This connection subscribes to it
        # itself, so revocations are heard again as soon as it is back after a Redis restart
        # (the layer's own subscriptions do not always come back).
        await self._pubsub.subscribe(self._revocation_channel, node_channel)
        deadline = time.monotonic() + settings.RELAY_REDIS_TIMEOUT_SECONDS
        while True:
            message = await self._pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if message is None:
                raise BusUnavailable("no subscribe confirmation")
            if message.get("type") == "subscribe" and message["channel"].decode() == node_channel:
                break
        self.up = True

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader], timeout=2)
        for client in (self._commands, self._listener):
            try:
                await client.aclose()
            except Exception:  # closing after Redis died is best effort
                pass

    async def _read(self) -> None:
        """Read the node's pub/sub connection forever; on loss, tell the hub and reconnect."""
        backoff = 0.1
        while True:
            try:
                if not self.up:
                    await self._connect()
                    backoff = 0.1
                    logger.info("relay bus reconnected", extra={"event": "relay_bus_up"})
                await self._read_until_lost()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.up:
                    self.up = False
                    logger.warning("relay bus lost", extra={"event": "relay_bus_down", "error": type(exc).__name__})
                    self._fail_confirmations()
                    if self._lost is not None:
                        self._lost()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _read_until_lost(self) -> None:
        pubsub, deliver, prefix_length = self._pubsub, self._deliver, len(self._channel_prefix)
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            channel = message["channel"].decode()
            if kind == "message" and channel == self._revocation_channel:
                self._revocations_heard(message["data"])
            elif kind == "message":
                sender, _, text = message["data"].decode().partition(SEPARATOR)
                deliver(channel[prefix_length:], sender, text)
            elif kind == "subscribe":
                future = self._confirmations.pop(channel, None)
                if future is not None and not future.done():
                    future.set_result(None)

    def _revocations_heard(self, data: bytes) -> None:
        from channels.layers import get_channel_layer

        try:
            message = get_channel_layer().deserialize(data)
            device_ids = [str(device_id) for device_id in message.get("device_ids", [])]
            reason = str(message.get("reason") or "device revoked")
        except Exception as exc:
            logger.warning("relay revocation unreadable", extra={"event": "relay_revocations_failed", "error": type(exc).__name__})
            return
        if self._revoked is not None:
            self._revoked(device_ids, reason)

    def _fail_confirmations(self) -> None:
        for future in self._confirmations.values():
            if not future.done():
                future.set_exception(BusUnavailable("redis connection lost"))
        self._confirmations.clear()

    async def subscribe(self, book_id: str) -> None:
        """Subscribe this node to a book; returns once Redis confirmed, so no later frame is missed."""
        if not self.up:
            raise BusUnavailable("redis is down")
        channel = self._channel_prefix + book_id
        future = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = future
        try:
            await self._pubsub.subscribe(channel)
            await asyncio.wait_for(future, settings.RELAY_REDIS_TIMEOUT_SECONDS)
        except Exception as exc:
            self._confirmations.pop(channel, None)
            raise BusUnavailable(type(exc).__name__) from exc

    async def unsubscribe(self, book_id: str) -> None:
        if not self.up:
            return  # the reconnect starts with no book subscribed anyway
        try:
            await self._pubsub.unsubscribe(self._channel_prefix + book_id)
        except Exception as exc:
            logger.warning("relay unsubscribe failed", extra={"event": "relay_unsubscribe_failed", "error": type(exc).__name__})

    async def _script(self, name: str, keys: list[str], args: list):
        try:
            return await asyncio.wait_for(self._scripts[name](keys=keys, args=args), settings.RELAY_REDIS_TIMEOUT_SECONDS)
        except Exception as exc:
            raise BusUnavailable(type(exc).__name__) from exc

    async def operation_publish(
        self, *, book_id: str, device_id: str, head: str, tail: str, now_ms: int, count_recipients: bool
    ) -> tuple[int, int]:
        """Queue one publish script; the flusher sends the queue as one pipeline per round trip.

        Automatic pipelining: at thousands of frames a second, one EVALSHA per round trip spends
        the node's CPU on pool and socket work. Order is kept: the queue is sent in arrival order
        on one connection, one batch after the other, and a socket awaits its frame's publish
        before it reads its next one.
        """
        keys = _publish_keys(book_id)
        future = asyncio.get_running_loop().create_future()
        self._pending.append(([*keys, head, tail, device_id, now_ms, "1" if count_recipients else "0", *_backlog_args()], future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        seq, recipients = await future
        return int(seq), int(recipients)

    async def _flush(self) -> None:
        from redis.exceptions import NoScriptError

        while self._pending:
            batch, self._pending = self._pending, []
            try:
                if self._publish_sha is None:
                    self._publish_sha = await self._commands.script_load(_OPERATION_PUBLISH)
                async with self._commands.pipeline(transaction=False) as pipe:
                    for values, _ in batch:
                        pipe.evalsha(self._publish_sha, 5, *values)
                    results = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(BusUnavailable(type(exc).__name__))
                continue
            unknown = [entry for entry, result in zip(batch, results) if isinstance(result, NoScriptError)]
            if unknown:  # Redis restarted and forgot the script: nothing ran, load it and send again first
                self._publish_sha = None
                self._pending = unknown + self._pending
            for (_, future), result in zip(batch, results):
                if future.done() or isinstance(result, NoScriptError):
                    continue
                if isinstance(result, Exception):
                    future.set_exception(BusUnavailable(type(result).__name__))
                else:
                    future.set_result(result)

    async def backlog_read(self, book_id: str) -> tuple[int, list[BacklogEntry]]:
        """The book's current seq and its backlog, read together (one MULTI)."""
        async with self._commands.pipeline(transaction=True) as pipe:
            pipe.get(_key("seq", book_id))
            pipe.lrange(_key("backlog", book_id), 0, -1)
            try:
                seq, raw = await asyncio.wait_for(pipe.execute(), settings.RELAY_REDIS_TIMEOUT_SECONDS)
            except Exception as exc:
                raise BusUnavailable(type(exc).__name__) from exc
        return int(seq or 0), [_backlog_entry(item) for item in raw]

    async def presence_join(self, *, book_id: str, device_id: str, socket_id: str, online_frame: str) -> list[str]:
        keys = [_key("presence", book_id), _key("book", book_id)]
        peers = await self._script("join", keys, [socket_id, device_id, _now_ms(), _presence_ttl_ms(), online_frame])
        return [peer.decode() for peer in peers]

    async def presence_leave(self, *, book_id: str, device_id: str, socket_id: str, offline_frame: str) -> None:
        keys = [_key("presence", book_id), _key("book", book_id)]
        await self._script("leave", keys, [socket_id, device_id, _now_ms(), offline_frame])

    async def presence_refresh(self, entries: list[tuple[str, str, str]]) -> None:
        """Extend the presence of this node's sockets: (book id, socket id, device id) each."""
        expires = _now_ms() + _presence_ttl_ms()
        async with self._commands.pipeline(transaction=False) as pipe:
            for book_id, socket_id, device_id in entries:
                key = _key("presence", book_id)
                pipe.hset(key, socket_id, f"{device_id}|{expires}")
                pipe.pexpire(key, _presence_ttl_ms())
            await asyncio.wait_for(pipe.execute(), settings.RELAY_REDIS_TIMEOUT_SECONDS)

    async def ping(self) -> None:
        if not self.up:
            raise BusUnavailable("relay pub/sub connection is down")
        await asyncio.wait_for(self._commands.ping(), settings.RELAY_REDIS_TIMEOUT_SECONDS)


def _redis_sync():
    """The process's synchronous client for the HTTP edges (threads): the "relay" user's pool."""
    return sync_client("relay")


def _redis_counters(book_id: str) -> BookCounters:
    client = _redis_sync()
    seq, last = client.mget(_key("seq", book_id), _key("last", book_id))
    now = _now_ms()
    online = set()
    for value in client.hvals(_key("presence", book_id)):
        device, _, expires = value.decode().partition(SEPARATOR)
        if int(expires) >= now:
            online.add(device)
    return BookCounters(int(seq or 0), int(last) if last else None, frozenset(online))


def operation_publish_sync(*, book_id: str, device_id: str, head: str, tail: str, now_ms: int) -> tuple[int, int]:
    """RedisBus.operation_publish for synchronous callers (POST /relay/send): (seq, sockets reached)."""
    keys = _publish_keys(book_id)
    try:
        seq, recipients = _redis_sync().eval(_OPERATION_PUBLISH, len(keys), *keys, head, tail, device_id, now_ms, "1", *_backlog_args())
    except Exception as exc:
        raise BusUnavailable(type(exc).__name__) from exc
    return int(seq), int(recipients)


def book_counters_read(book_id: str) -> BookCounters:
    """The relay counters of a book (sync code: the sync_status selector). BusUnavailable if Redis is down."""
    if not settings.REDIS_URL:
        return _local_counters(book_id)
    try:
        return _redis_counters(book_id)
    except Exception as exc:
        raise BusUnavailable(type(exc).__name__) from exc


async def bus_probe() -> None:
    """Ping Redis with a short-lived client (a process whose hub has not started yet)."""
    client = async_client("health")
    try:
        await client.ping()
    finally:
        await client.aclose()


def bus_create():
    return RedisBus() if settings.REDIS_URL else LocalBus()
