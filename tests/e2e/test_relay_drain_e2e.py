"""A node that gets SIGTERM hands its relay sockets back with 1012, under either ASGI server.

The drain (homepocket.server, docs/relay.md "Draining"): open sockets close with 1012 (service
restart: reconnect, through the proxy, to another node); a socket that arrives during the drain
is refused with HTTP 503 on its upgrade, which a proxy retries on another node; then the node
stops cleanly.
"""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from homepocket_client import HomePocketClient
from homepocket_client.relay import RETRYABLE_CLOSE_CODES, relay_connect
from tests.e2e.relay_support import book_of, ciphertext, close_code, next_frame
from tests.harness.live import PAIRING_UNLIMITED, LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.parametrize("asgi_server", ["granian", "uvicorn"])]


def started(tmp_path, asgi_server: str, drain_seconds: str) -> LiveServer:
    return LiveServer(tmp_path, extra_env={"DRAIN_SECONDS": drain_seconds}, server=asgi_server).start(setup=PAIRING_UNLIMITED)


async def test_sigterm_closes_open_sockets_with_1012_and_refuses_new_ones_with_503(tmp_path, asgi_server):
    server = started(tmp_path, asgi_server, drain_seconds="3")
    try:
        with HomePocketClient(server.url, timeout=10) as api:
            alice, bob, carol = book_of(api, 3)
        a = await relay_connect(server.url, alice)
        b = await relay_connect(server.url, bob)
        await a.send_operation(ciphertext())
        assert (await next_frame(b))["type"] == "crdt_operation"  # relaying until the signal
        server.send_signal(signal.SIGTERM)
        assert await close_code(a) == 1012
        assert await close_code(b) == 1012
        assert 1012 in RETRYABLE_CLOSE_CODES
        # Still draining: HTTP is served, /health says 503, and a new socket is turned away.
        assert httpx.get(f"{server.url}/health").status_code == 503
        with pytest.raises(InvalidStatus) as refused:
            await relay_connect(server.url, carol)
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "1"
        assert await asyncio.to_thread(server.process.wait, 40) == 0
    finally:
        server.stop()


async def test_sockets_get_1012_also_without_a_drain_period(tmp_path, asgi_server):
    server = started(tmp_path, asgi_server, drain_seconds="0")
    try:
        with HomePocketClient(server.url, timeout=10) as api:
            alice, _ = book_of(api, 2)
        a = await relay_connect(server.url, alice)
        await a.ping()
        assert (await next_frame(a))["type"] == "pong"
        server.send_signal(signal.SIGTERM)
        assert await close_code(a) == 1012
        assert await asyncio.to_thread(server.process.wait, 40) == 0
    finally:
        server.stop()
