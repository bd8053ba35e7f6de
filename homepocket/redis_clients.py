"""Every Redis client of a process is made here (CONVENTIONS 10): bounded pools, retries, fallbacks.

Each user of Redis is declared once in USERS with what it does when Redis is gone:

- FAIL_OPEN: go on without Redis (the request is served as if the feature were off);
- FAIL_CLOSED: refuse with a documented error (RETRY_LATER) or skip the work;
- LOCAL_ONLY: go on with this process's own state (memory, the database), which is correct for
  one node and degrades to "each node on its own" for several.

Every pool is a BlockingConnectionPool with a wait timeout: past `max_connections` a caller waits
for a connection instead of failing at once with MaxConnectionsError (redis-py 8's default async
pool raises under a few hundred concurrent requests). Users that must notice a lost connection at
once (the relay, whose sockets close on it) have no retries; the others retry connection errors
with exponential backoff and jitter, which is also how a client reconnects after a restart.

Clients not made here, and why: Django's cache (settings CACHES, given the same blocking pool
through its OPTIONS) and the channel layer (channels_redis makes its own connections per loop).

The module also owns the node-wide broadcast (docs/cluster.md, "Broadcast"): one pub/sub channel
on which a node tells every node (itself included) that something changed, so that in-process
caches drop an entry and hot settings apply within a second.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.signals import setting_changed

logger = logging.getLogger("homepocket.redis")


class Fallback(enum.Enum):
    FAIL_OPEN = "fail_open"
    FAIL_CLOSED = "fail_closed"
    LOCAL_ONLY = "local_only"


@dataclass(frozen=True)
class RedisUser:
    name: str
    fallback: Fallback
    url_setting: str = "REDIS_URL"  # the setting holding its URL (the limiter may have its own Redis)
    max_connections: int = 8
    timeout: float = 2.0  # seconds: socket, connect, and the wait for a free pooled connection
    timeout_setting: str | None = None  # a setting overriding `timeout`
    max_connections_setting: str | None = None
    retries: int = 2  # connection errors retried with backoff; 0: fail fast, the caller decides
    socket_timeout: float | None = None  # a reply's bound when not `timeout` (a long pipeline)
    why: str = ""


USERS: dict[str, RedisUser] = {
    user.name: user
    for user in (
        RedisUser(
            "quotas", Fallback.FAIL_OPEN, url_setting="RATELIMIT_REDIS_URL", timeout_setting="RATELIMIT_STORE_TIMEOUT",
            max_connections_setting="RATELIMIT_REDIS_MAX_CONNECTIONS", retries=0,
            why="each policy declares open or closed (docs/quotas.md); the store then stays marked down RATELIMIT_STORE_RETRY s",
        ),
        RedisUser(
            "relay", Fallback.FAIL_CLOSED, max_connections=32, timeout_setting="RELAY_REDIS_TIMEOUT_SECONDS", retries=0, socket_timeout=5.0,
            why="sockets close with 1013 TRY_AGAIN_LATER and HTTP sends answer 503 RETRY_LATER; a lost connection must surface",
        ),
        RedisUser(
            "relay_pubsub", Fallback.FAIL_CLOSED, max_connections=1, timeout=5.0, retries=0,
            why="the node's one subscription connection for books; its loss closes the node's sockets",
        ),
        RedisUser("jobs", Fallback.FAIL_CLOSED, max_connections=4, retries=0, why="a periodic run is skipped, the next beat tries again"),
        RedisUser(
            "device_keys", Fallback.LOCAL_ONLY, max_connections=8, timeout=0.5, retries=0,
            why="device records are read from the database on every request; no cache is trusted",
        ),
        RedisUser(
            "broadcast", Fallback.LOCAL_ONLY, max_connections=2, retries=2,
            why="caches are bypassed and hot settings are polled from the database until it is back",
        ),
        RedisUser("health", Fallback.FAIL_CLOSED, max_connections=2, retries=0, why="/ready answers 503 naming Redis"),
        RedisUser(
            "heartbeat", Fallback.FAIL_CLOSED, max_connections=2, retries=0,
            why="a beat is skipped and logged; after 30 s without one the node drops off the cluster page",
        ),
        RedisUser(
            "ops_aggregates", Fallback.LOCAL_ONLY, max_connections=2, retries=0,
            why="a flush that fails keeps its tallies in memory and adds them at the next flush; the dashboard says it has no data",
        ),
        RedisUser(
            "abuse", Fallback.FAIL_OPEN, max_connections=2, retries=0,
            why="requests are served as usual; a flush that fails drops its counts and no abuse flag is raised until Redis is back",
        ),
    )
}


def _resolved(user: RedisUser) -> tuple[str, int, float]:
    url = getattr(settings, user.url_setting, "") or ""
    timeout = float(getattr(settings, user.timeout_setting)) if user.timeout_setting else user.timeout
    size = int(getattr(settings, user.max_connections_setting)) if user.max_connections_setting else user.max_connections
    return url, size, timeout


def _retry(user: RedisUser, module):
    from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
    from redis.exceptions import ConnectionError, TimeoutError

    if user.retries <= 0:
        return module.Retry(NoBackoff(), 0)
    return module.Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), user.retries, supported_errors=(ConnectionError, TimeoutError))


_sync_clients: dict[tuple, object] = {}
_sync_lock = threading.Lock()


def redis_configured(name: str) -> bool:
    """Whether this user has a Redis at all (the distributed mode); False: its embedded form applies."""
    return bool(_resolved(USERS[name])[0])


def sync_client(name: str):
    """The process's synchronous client of a declared user (one pool per user, URL and process)."""
    import redis
    import redis.retry

    user = USERS[name]
    url, size, timeout = _resolved(user)
    if not url:
        raise RuntimeError(f"Redis user {name!r} has no URL ({user.url_setting} is empty)")
    key = (name, url, size, timeout, os.getpid())
    client = _sync_clients.get(key)
    if client is None:
        with _sync_lock:
            client = _sync_clients.get(key)
            if client is None:
                pool = redis.BlockingConnectionPool.from_url(
                    url, max_connections=size, timeout=timeout, socket_timeout=user.socket_timeout or timeout,
                    socket_connect_timeout=min(timeout, 2.0),
                    retry=_retry(user, redis.retry), health_check_interval=30,
                )  # fmt: skip
                client = _sync_clients[key] = redis.Redis(connection_pool=pool)
    return client


def sync_clients_close() -> None:
    """Close this process's pooled clients (the lifespan's shutdown); a later use makes new ones."""
    with _sync_lock:
        clients = [client for key, client in _sync_clients.items() if key[-1] == os.getpid()]
        _sync_clients.clear()
    for client in clients:
        try:
            client.connection_pool.disconnect()
        except Exception:  # a connection already broken: nothing to close
            pass


def async_client(name: str, *, socket_timeout: float | None = -1.0):
    """A new asyncio client of a declared user; the caller owns it (one per event loop) and closes it.

    `socket_timeout=None` is for a pub/sub connection that waits for messages without a bound.
    """
    import redis.asyncio as aioredis
    import redis.asyncio.retry

    user = USERS[name]
    url, size, timeout = _resolved(user)
    if not url:
        raise RuntimeError(f"Redis user {name!r} has no URL ({user.url_setting} is empty)")
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=size, timeout=timeout, socket_connect_timeout=min(timeout, 2.0),
        socket_timeout=(user.socket_timeout or timeout) if socket_timeout == -1.0 else socket_timeout,
        retry=_retry(user, redis.asyncio.retry),
    )  # fmt: skip
    return aioredis.Redis(connection_pool=pool)


def _forget(*, setting, **kwargs):
    if setting.endswith("REDIS_URL") or setting == "CACHE_KEY_PREFIX":
        _sync_clients.clear()
        broadcast.reset()


setting_changed.connect(_forget)


# --- the node-wide broadcast -------------------------------------------------------------------

Handler = Callable[[dict], None]


class Broadcast:
    """Topics published to every node; each node's listener thread calls the topic's handlers.

    Distributed: one channel `<CACHE_KEY_PREFIX>:broadcast`, JSON messages `{"topic", "data"}`,
    heard by a daemon thread per process that subscribes on first use and reconnects with backoff.
    Embedded (no REDIS_URL): one process, so publish calls the handlers directly.

    `epoch` counts the listener's (re)connections and losses: a cache keeps an entry only while
    the epoch it was loaded in is current and the listener is `listening`, so an invalidation
    missed while the connection was down can never leave a stale entry behind.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.listening = False
        self.epoch = 0

    @property
    def distributed(self) -> bool:
        return redis_configured("broadcast")

    def channel(self) -> str:
        return f"{settings.CACHE_KEY_PREFIX}:broadcast"

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Call `handler(data)` for every message of a topic, from any node (idempotent)."""
        with self._lock:
            handlers = self._handlers.setdefault(topic, [])
            if handler not in handlers:
                handlers.append(handler)

    def trusted(self) -> bool:
        """Whether this process hears every broadcast now (embedded: always). Starts the listener."""
        if not self.distributed:
            return True
        self.start()
        return self.listening

    def publish(self, topic: str, data: dict) -> bool:
        """Tell every node; False when Redis could not be reached (callers' fallback: TTLs and polls)."""
        if not self.distributed:
            self._dispatch(topic, data)
            return True
        try:
            sync_client("broadcast").publish(self.channel(), json.dumps({"topic": topic, "data": data}))
            return True
        except Exception as exc:
            logger.warning("broadcast not published", extra={"event": "broadcast_failed", "topic": topic, "error": type(exc).__name__})
            return False

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._thread.pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._thread.pid == os.getpid():
                return
            self._stop = threading.Event()
            self.listening = False
            thread = threading.Thread(target=self._listen, args=(self._stop,), name="redis-broadcast", daemon=True)
            thread.pid = os.getpid()  # a forked child (Celery prefork) starts its own
            self._thread = thread
            thread.start()

    def reset(self) -> None:
        """Stop listening (tests changing settings; a later use starts again)."""
        self._stop.set()
        self._thread = None
        self._lost()

    def wait_listening(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.trusted():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _lost(self) -> None:
        self.listening = False
        self.epoch += 1

    def _listen(self, stop: threading.Event) -> None:
        import redis

        backoff = 0.05
        url, _, _ = _resolved(USERS["broadcast"])
        if not url:  # the settings changed to the embedded mode under a starting listener (tests)
            return
        while not stop.is_set():
            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=None, health_check_interval=5)
            pubsub = client.pubsub(ignore_subscribe_messages=False)
            try:
                pubsub.subscribe(self.channel())
                while not stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        pubsub.check_health()
                        continue
                    if message["type"] == "subscribe" and stop is self._stop:
                        self.epoch += 1  # entries loaded before this point may have missed a message
                        self.listening = True
                        backoff = 0.05
                        logger.info("broadcast listening", extra={"event": "broadcast_up"})
                    elif message["type"] == "message":
                        self._message(message["data"])
            except Exception as exc:
                if stop is not self._stop:
                    continue  # a listener a reset stopped: the current one's state is not its to change
                if self.listening:
                    logger.warning("broadcast lost", extra={"event": "broadcast_down", "error": type(exc).__name__})
                self._lost()
                stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    pubsub.close()
                    client.close()
                except Exception:
                    pass
        if stop is self._stop:
            self.listening = False

    def _message(self, raw: bytes) -> None:
        try:
            decoded = json.loads(raw)
            topic, data = decoded["topic"], decoded["data"]
        except (ValueError, KeyError, TypeError):
            logger.warning("broadcast message unreadable", extra={"event": "broadcast_unreadable"})
            return
        self._dispatch(topic, data)

    def _dispatch(self, topic: str, data: dict) -> None:
        for handler in list(self._handlers.get(topic, ())):
            try:
                handler(data)
            except Exception:
                logger.exception("broadcast handler failed", extra={"event": "broadcast_handler_failed", "topic": topic})


broadcast = Broadcast()
