"""Liveness (/health) and readiness (/ready) for load balancers and orchestrators.

/health says whether this process should receive traffic at all: 503 once it drains on SIGTERM.
/ready checks each shared component (database, cache, channel layer, object storage) with its
latency; a required component that is down makes it 503, so a node without its database is
taken out of rotation instead of answering DATABASE_ERROR to every request.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
import weakref

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import connection
from django.http import JsonResponse

from homepocket.drain import drain_active

CHECK_TIMEOUT_SECONDS = 3.0
# The probe channel of each event loop: the Redis pub/sub layer keeps one connection per loop, and
# a channel must be subscribed in the loop that sends to it or the probe message is lost.
_probe_channels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def health_view(request):
    if drain_active():
        return JsonResponse({"status": "draining"}, status=503)
    return JsonResponse({"status": "ok"})


async def ready_view(request):
    names = list(_CHECKS)
    results = await asyncio.gather(*(_timed(name, _CHECKS[name]) for name in names))
    components = dict(zip(names, results))
    ready = all(c["status"] == "up" for name, c in components.items() if c["required"])
    ready = ready and not drain_active()
    return JsonResponse(
        {"status": "ready" if ready else "not_ready", "draining": drain_active(), "components": components},
        status=200 if ready else 503,
    )


async def _timed(name, check):
    started = time.perf_counter()
    result = {"status": "up", "required": name in settings.READY_REQUIRED}
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure means down; the class name says which kind
        result["status"] = "down"
        result["error"] = type(exc).__name__
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


@sync_to_async
def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _check_cache():
    key = f"ready-probe:{os.getpid()}"
    value = uuid.uuid4().hex
    await cache.aset(key, value, timeout=10)
    if await cache.aget(key) != value:
        raise RuntimeError("cache returned another value")


async def _check_channel_layer():
    layer = get_channel_layer()
    loop = asyncio.get_running_loop()
    # One probe channel per loop, reused, so probes do not pile up subscriptions.
    channel = _probe_channels.get(loop)
    if channel is None:
        channel = await layer.new_channel("ready-probe.")
        _probe_channels[loop] = channel
    token = uuid.uuid4().hex
    try:
        await layer.send(channel, {"type": "ready.probe", "token": token})
        while True:
            message = await layer.receive(channel)
            if message.get("token") == token:
                return
    except BaseException:
        # After a Redis restart the layer does not always subscribe this channel again, and the
        # probe would time out forever: the next probe starts from a new channel.
        _probe_channels.pop(loop, None)
        raise


@sync_to_async(thread_sensitive=False)
def _check_storage():
    if settings.S3_BUCKET:
        # A HEAD on a key that need not exist: 404 is an answer, a dead endpoint raises.
        default_storage.exists(".ready-probe")
        return
    settings.OBJECTS_DIR.mkdir(parents=True, exist_ok=True)
    if not os.access(settings.OBJECTS_DIR, os.W_OK):
        raise PermissionError("objects directory not writable")


async def _check_signer():
    # Every configured signer must answer PING; a signer answers only after its RNG self-check passed.
    from apps.signing.client import signer_client

    answers = await signer_client().ping_all()
    if not answers or not all(answers.values()):
        raise ConnectionError(f"{sum(not ok for ok in answers.values())} of {len(answers)} signers not answering")


async def _check_relay():
    """This process's relay hub: its Redis pub/sub connection is up (docs/relay.md)."""
    from apps.relay.hub import relay_ready_check

    await relay_ready_check()


_CHECKS = {
    "database": _check_database,
    "cache": _check_cache,
    "channel_layer": _check_channel_layer,
    "storage": _check_storage,
    "signer": _check_signer,
    "relay": _check_relay,
}
