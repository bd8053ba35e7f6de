"""Revocation across two server processes (issue 12, item 7): a bump on one node is obeyed by the other.

Both nodes share a database and a private redis-server (as in test_relay_cluster_e2e). The bump
runs as an operator runs it, `manage.py revoke_tokens` against node 1's settings. Node 2 must
refuse the device's earlier token and close its socket; no assertion on timings (CONVENTIONS):
each wait polls with a generous deadline, and the latency seen is printed for the record.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from homepocket_client import HomePocketClient
from homepocket_client.relay import relay_connect
from tests.e2e.relay_support import book_of, close_code, next_frame
from tests.e2e.test_relay_cluster_e2e import node_env
from tests.harness.live import PAIRING_UNLIMITED, LiveServer
from tests.harness.redis_server import PrivateRedis

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.fixture
def cluster(tmp_path):
    redis_server = PrivateRedis(tmp_path).start()
    # A one-hour device cache: node 2's refusal can only come from the broadcast invalidation.
    env = node_env(redis_server, DEVICE_CACHE_SECONDS="3600", DEVICE_CACHE_REDIS_SECONDS="3600")
    first = LiveServer(tmp_path / "node1", extra_env=env)
    try:
        first.start(setup=PAIRING_UNLIMITED)
        second = LiveServer(tmp_path / "node2", extra_env={**env, **first.peer_env()})
        try:
            second.start(migrate=False)
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()
        redis_server.stop()


def devices_status(server, device, token: str) -> tuple[int, dict]:
    response = httpx.get(f"{server.url}/api/v1/books/{device.book_id}/devices", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return response.status_code, response.json()


async def test_a_bump_on_node_1_refuses_the_old_token_and_closes_the_socket_on_node_2(cluster):
    first, second = cluster
    with HomePocketClient(first.url) as api:
        alice, bob = book_of(api, 2)
    old_token = bob.book_token(lifetime_seconds=3600)
    for _ in range(2):  # the second answer comes from node 2's memory
        assert (await asyncio.to_thread(devices_status, second, bob, old_token))[0] == 200
    socket = await relay_connect(second.url, bob)
    await socket.ping()
    assert (await next_frame(socket))["type"] == "pong"

    await asyncio.to_thread(first.manage, "revoke_tokens", "--device", str(bob.device_id))
    bumped_at = time.monotonic()  # the command has committed and announced
    assert await close_code(socket, timeout=30) == 4401
    closed_after = time.monotonic() - bumped_at
    deadline = time.monotonic() + 30
    while (answer := await asyncio.to_thread(devices_status, second, bob, old_token))[0] == 200:
        assert time.monotonic() < deadline, "node 2 kept accepting the old token"
        await asyncio.sleep(0.05)
    refused_after = time.monotonic() - bumped_at
    status, body = answer
    assert (status, body["error"]["code"], body["error"]["details"]["reason"]) == (401, "INVALID_TOKEN", "token_revoked")
    print(f"node 2: socket closed {closed_after:.3f} s, old token refused {refused_after:.3f} s after the command returned")

    # The device stays paired: a token it signs from the cut-off on works on both nodes.
    fresh = bob.book_token(now=body["error"]["details"]["valid_after"])
    for server in (first, second):
        assert (await asyncio.to_thread(devices_status, server, bob, fresh))[0] == 200
    # alice was not touched.
    assert (await asyncio.to_thread(devices_status, second, alice, alice.book_token(now=time.time() - 5)))[0] == 200
