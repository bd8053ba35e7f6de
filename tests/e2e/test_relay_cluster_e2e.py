"""The relay across two server processes sharing a Redis, and what a Redis restart does to a node.

Each test starts its own redis-server on a free port (never the machine's shared one), so a
restart hurts nobody else. Both nodes share one database: the run's PostgreSQL database in the
distributed mode, one SQLite file otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import time
from collections import defaultdict

import httpx
import pytest

from homepocket_client import HomePocketClient
from homepocket_client.relay import relay_connect
from tests.e2e.relay_support import book_of, close_code, next_frame
from tests.harness.live import PAIRING_UNLIMITED, LiveServer
from tests.harness.redis_server import PrivateRedis as RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def node_env(redis_server, **extra) -> dict[str, str]:
    return {"REDIS_URL": redis_server.url, "CACHE_KEY_PREFIX": f"hp-relay-{secrets.token_hex(4)}", **extra}


# Across nodes under uvicorn too (ASGI_SERVER): delivery, revocation and the Redis-restart closes.
both_servers = pytest.mark.parametrize("asgi_server", ["granian", "uvicorn"])
both_servers_two_nodes = pytest.mark.parametrize("two_nodes", ["granian", "uvicorn"], indirect=True)


@pytest.fixture
def two_nodes(request, tmp_path, redis_server):
    server = getattr(request, "param", "granian")
    env = node_env(redis_server, BOOK_MAX_DEVICES="20")
    first = LiveServer(tmp_path / "node1", extra_env=env, server=server)  # it makes its own work directory
    first.start(setup=PAIRING_UNLIMITED)  # 20 devices join one book from one address
    second = LiveServer(tmp_path / "node2", extra_env={**env, **first.peer_env()}, server=server)
    try:
        second.start(migrate=False)
        yield first, second
    finally:
        second.stop()
        first.stop()


SENDERS = 20
FRAMES_PER_SENDER = 500  # 10,000 frames, 190,000 deliveries
WINDOW_ROUNDS = 20  # senders run at most this many rounds ahead of the slowest reader


def payload_for(sender: int, number: int) -> str:
    return base64.b64encode(f"{sender}:{number}:".encode() + os.urandom(24)).decode()


async def test_two_nodes_relay_10000_frames_among_20_devices_with_none_lost_duplicated_or_reordered(two_nodes):
    first, second = two_nodes
    with HomePocketClient(first.url) as api:
        devices = book_of(api, SENDERS, "device")
    sockets = [await relay_connect((first if i % 2 == 0 else second).url, d, max_queue=None) for i, d in enumerate(devices)]
    ids = [str(d.device_id) for d in devices]
    sender_of = {device_id: index for index, device_id in enumerate(ids)}
    sent: dict[tuple[int, int], str] = {}
    received = [0] * SENDERS
    last_number = [defaultdict(lambda: -1) for _ in range(SENDERS)]
    last_seq = [0] * SENDERS
    problems: list[str] = []
    expected = (SENDERS - 1) * FRAMES_PER_SENDER

    async def read(index: int) -> None:
        socket = sockets[index]
        while received[index] < expected:
            frame = json.loads(await asyncio.wait_for(socket.connection.recv(), 60))
            if frame["type"] != "crdt_operation":
                continue
            sender = sender_of[frame["device_id"]]
            number = int(base64.b64decode(frame["payload"]).split(b":")[1])
            if sender == index:
                problems.append(f"device {index} got its own frame back")
            if number != last_number[index][sender] + 1:
                problems.append(f"device {index}: from {sender} got {number} after {last_number[index][sender]}")
            if frame["payload"] != sent.get((sender, number)):
                problems.append(f"device {index}: payload of {sender}:{number} altered")
            if frame["seq"] <= last_seq[index]:
                problems.append(f"device {index}: seq {frame['seq']} after {last_seq[index]}")
            last_number[index][sender], last_seq[index] = number, frame["seq"]
            received[index] += 1

    readers = [asyncio.create_task(read(i)) for i in range(SENDERS)]
    for number in range(FRAMES_PER_SENDER):
        while min(received) < (number - WINDOW_ROUNDS) * (SENDERS - 1):
            await asyncio.sleep(0.005)
        for sender, socket in enumerate(sockets):
            sent[(sender, number)] = payload = payload_for(sender, number)
            await socket.send_operation(payload)
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    for socket in sockets:
        await socket.close()

    assert problems == []
    assert received == [expected] * SENDERS
    assert all(last_number[i][s] == FRAMES_PER_SENDER - 1 for i in range(SENDERS) for s in range(SENDERS) if s != i)
    with HomePocketClient(second.url) as api:
        assert api.sync_status(devices[0])["operation_count"] == SENDERS * FRAMES_PER_SENDER


@both_servers_two_nodes
async def test_a_device_on_one_node_reaches_a_device_on_the_other_and_sees_its_presence(two_nodes):
    first, second = two_nodes
    with HomePocketClient(first.url) as api:
        alice, bob = book_of(api, 2)
    async with await relay_connect(first.url, alice) as a:
        async with await relay_connect(second.url, bob) as b:
            assert await next_frame(a, skip_presence=False) == {"type": "presence", "device_id": str(bob.device_id), "state": "online"}
            await b.send_operation("aGVsbG8=")
            frame = await next_frame(a)
            assert (frame["payload"], frame["device_id"]) == ("aGVsbG8=", str(bob.device_id))


@both_servers_two_nodes
async def test_revoking_a_device_on_one_node_closes_its_socket_on_the_other(two_nodes):
    first, second = two_nodes
    with HomePocketClient(first.url) as api:
        alice, bob = book_of(api, 2)
        async with await relay_connect(second.url, bob) as b:
            await b.ping()
            assert (await next_frame(b))["type"] == "pong"
            await asyncio.to_thread(api.device_revoke, alice, bob.device_id)
            assert await close_code(b) == 4401


def ready_components(server) -> tuple[int, dict]:
    response = httpx.get(f"{server.url}/ready", timeout=15)
    return response.status_code, response.json()["components"]


@both_servers
async def test_a_redis_restart_closes_sockets_with_1013_ready_tells_and_the_relay_recovers(tmp_path, redis_server, asgi_server):
    server = LiveServer(tmp_path, extra_env=node_env(redis_server), server=asgi_server).start(setup=PAIRING_UNLIMITED)
    try:
        with HomePocketClient(server.url) as api:
            alice, bob = book_of(api, 2)
        a = await relay_connect(server.url, alice)
        await a.ping()
        assert (await next_frame(a))["type"] == "pong"

        redis_server.stop()
        assert await close_code(a) == 1013
        status, components = await asyncio.to_thread(ready_components, server)
        assert status == 503 and components["relay"]["status"] == "down"
        refused = await relay_connect(server.url, alice)
        assert await close_code(refused) == 1013

        redis_server.start()
        deadline = time.monotonic() + 30
        while (ready := await asyncio.to_thread(ready_components, server))[0] != 200:
            assert time.monotonic() < deadline, f"the node never became ready again: {ready}\n{server.log_text()[-2000:]}"
            await asyncio.sleep(0.2)
        async with await relay_connect(server.url, alice) as a, await relay_connect(server.url, bob) as b:
            await a.send_operation("aGk=")
            assert (await next_frame(b))["payload"] == "aGk="
            # Revocations still reach the node's sockets after the restart.
            with HomePocketClient(server.url) as api:
                await asyncio.to_thread(api.device_revoke, alice, bob.device_id)
            assert await close_code(b) == 4401
    finally:
        server.stop()
