"""A server process's life: its parts, started in a written order at the ASGI lifespan's startup
and stopped in the reverse order at its shutdown (docs/cluster.md, "Start and stop order").

| # | part | start | stop |
|--:|---|---|---|
| 1 | `database` | check the database answers (`SELECT 1`; on PostgreSQL this opens the pool) | close this process's connections and the pool |
| 2 | `redis` | start the broadcast listener (distributed mode) | stop it and close the pooled Redis clients |
| 3 | `buffers` | (nothing) | flush what the apps buffer in memory: audit events, usage counts (homepocket.shutdown hooks) |
| 4 | `channel_layer` | start the relay hub: its bus and subscription connection | stop the hub: sockets still open close with 1001, the subscription ends |
| 5 | `signer_pool` | connect to every signer (PING) | close the connections |
| 6 | `aggregates` | start the dashboard's 1-minute flusher | its last flush |
| 7 | `abuse` | start the abuse signals' flush and evaluation loop | its last flush |
| 8 | `heartbeat` | first beat: the node shows on the cluster page only once all the above are up | remove the heartbeat: the node leaves the page at once |

Why this order: each part uses only the parts above it (the buffers are written to the database
and Redis, the relay hub to Redis, the heartbeat reports the signers), so a part starts after
what it needs and stops before it. Stopping, the node first leaves the cluster page, then stops
taking work (aggregates, signers, sockets), then writes what it holds, and only then lets go of
Redis and the database.

A part that fails to start is logged and the process starts anyway: a node with Redis down still
serves the API and says so on `/ready` (the fallbacks of homepocket/redis_clients.py apply), and a
lazy part (the relay hub, the signer connections) tries again on first use. A part that fails to
stop is logged and the next one still stops. Each step is logged (`lifespan_start`,
`lifespan_stop`, with the part's name) and kept in `steps` for the tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

logger = logging.getLogger("homepocket.lifespan")

Step = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Part:
    name: str
    start: Step | None
    stop: Step | None


# --- 1. database ----------------------------------------------------------------------------


def _database_check() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _database_close() -> None:
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close()
        close_pool = getattr(conn, "close_pool", None)  # PostgreSQL with psycopg's pool
        if close_pool is not None and getattr(conn, "pool", None) is not None:
            close_pool()


async def _database_start() -> None:
    await sync_to_async(_database_check, thread_sensitive=True)()


async def _database_stop() -> None:
    await sync_to_async(_database_close, thread_sensitive=True)()


# --- 2. redis -------------------------------------------------------------------------------


async def _redis_start() -> None:
    from homepocket.redis_clients import broadcast

    if broadcast.distributed:
        broadcast.start()


async def _redis_stop() -> None:
    from homepocket.redis_clients import broadcast, sync_clients_close

    if broadcast.distributed:
        broadcast.reset()
    await sync_to_async(sync_clients_close, thread_sensitive=False)()


# --- 3. buffers -----------------------------------------------------------------------------


async def _buffers_flush() -> None:
    from homepocket.shutdown import run_shutdown_hooks

    await sync_to_async(run_shutdown_hooks, thread_sensitive=False)()


# --- 4. channel layer (the relay hub) -------------------------------------------------------


async def _channel_layer_start() -> None:
    from apps.relay.hub import relay_hub

    await relay_hub()


async def _channel_layer_stop() -> None:
    from apps.relay.hub import relay_hub_stop

    await relay_hub_stop()


# --- 5. signer pool -------------------------------------------------------------------------


async def _signer_pool_start() -> None:
    if not settings.SIGNER_SOCKETS:
        return
    from apps.signing.client import signer_client

    answers = await signer_client().ping_all()
    down = [path for path, ok in answers.items() if not ok]
    if down:
        raise RuntimeError(f"{len(down)} of {len(answers)} signers did not answer")


async def _signer_pool_stop() -> None:
    from apps.signing.client import signer_clients_reset

    signer_clients_reset()


# --- 6, 7, 8. the process's loops --------------------------------------------------------------


async def _aggregates_start() -> None:
    from apps.ops.aggregates import aggregates_start

    aggregates_start()


async def _aggregates_stop() -> None:
    from apps.ops.aggregates import aggregates_stop

    await sync_to_async(aggregates_stop, thread_sensitive=False)()


async def _abuse_start() -> None:
    from apps.quotas.abuse import abuse_start

    abuse_start()


async def _abuse_stop() -> None:
    from apps.quotas.abuse import abuse_stop

    await sync_to_async(abuse_stop, thread_sensitive=False)()


async def _heartbeat_start() -> None:
    from apps.cluster.heartbeat import heartbeat_start

    heartbeat_start()


async def _heartbeat_stop() -> None:
    from apps.cluster.heartbeat import heartbeat_stop

    await sync_to_async(heartbeat_stop, thread_sensitive=False)()


PARTS: tuple[Part, ...] = (
    Part("database", _database_start, _database_stop),
    Part("redis", _redis_start, _redis_stop),
    Part("buffers", None, _buffers_flush),
    Part("channel_layer", _channel_layer_start, _channel_layer_stop),
    Part("signer_pool", _signer_pool_start, _signer_pool_stop),
    Part("aggregates", _aggregates_start, _aggregates_stop),
    Part("abuse", _abuse_start, _abuse_stop),
    Part("heartbeat", _heartbeat_start, _heartbeat_stop),
)

# What this process did, in order: ("start" | "stop", part name, "ok" | "failed"). For the tests.
steps: list[tuple[str, str, str]] = []

START_TIMEOUT_SECONDS = 10.0  # one part's start; past it the process starts without it


DONE = {"start": "lifespan part started", "stop": "lifespan part stopped"}


async def _run(action: str, steps_of: list[tuple[str, Step | None]], failed_message: str) -> None:
    for name, step in steps_of:
        if step is None:
            continue
        try:
            await (asyncio.wait_for(step(), START_TIMEOUT_SECONDS) if action == "start" else step())
        except Exception as exc:
            steps.append((action, name, "failed"))
            logger.warning(failed_message, extra={"event": f"lifespan_{action}", "part": name, "outcome": "failed", "error": type(exc).__name__})
            continue
        steps.append((action, name, "ok"))
        logger.info(DONE[action], extra={"event": f"lifespan_{action}", "part": name, "outcome": "ok"})


async def lifespan_start(parts: tuple[Part, ...] = PARTS) -> None:
    """Start each part in order; one that fails (or takes over START_TIMEOUT_SECONDS) is skipped."""
    await _run("start", [(part.name, part.start) for part in parts], "lifespan part did not start; the process starts without it")


async def lifespan_stop(parts: tuple[Part, ...] = PARTS) -> None:
    """Stop each part in reverse order; one that fails is logged and the next still stops."""
    await _run("stop", [(part.name, part.stop) for part in reversed(parts)], "lifespan part did not stop cleanly")


async def lifespan(scope, receive, send):
    """The ASGI lifespan protocol: start the parts, then at shutdown stop them in reverse."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await lifespan_start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await lifespan_stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
