"""The relay over real sockets against the live server: forwarding, refusals, limits, revocation."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from homepocket_client import DeviceIdentity, HomePocketClient, device_token_mint
from homepocket_client.keys import DeviceKey
from homepocket_client.relay import relay_connect
from tests.harness.cluster import server_kinds
from tests.e2e.relay_support import book_of, ciphertext, close_code, next_frame

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

# A representative part of the suite runs under both ASGI servers (ASGI_SERVER): forwarding,
# refusals and every close the server decides by itself (granian and uvicorn differ there most).
both_servers = pytest.mark.parametrize("server", ["granian", "uvicorn"], indirect=True)


@pytest.fixture
def server(request, live):
    """The session's server (granian), or under `both_servers` also its uvicorn twin."""
    return request.getfixturevalue("live_uvicorn") if getattr(request, "param", "granian") == "uvicorn" else live


@pytest.fixture
def api(server):
    with HomePocketClient(server.url, timeout=10) as client:
        yield client


@pytest.fixture(params=server_kinds("node"))
def live(request):
    """The session's node, and in the distributed run the session's cluster behind nginx too."""
    return request.getfixturevalue(f"live_{request.param}")


@pytest.fixture
def family(api):
    return book_of(api, 3, "family")


@pytest.fixture
def neighbours(api):
    return book_of(api, 2, "neighbour")


# --- forwarding -----------------------------------------------------------------------------------


@both_servers
async def test_a_frame_reaches_the_other_devices_verbatim_with_sender_seq_and_relay_time(server, family):
    alice, bob, carol = family
    payload = ciphertext(1000)
    async with await relay_connect(server.url, alice) as a, await relay_connect(server.url, bob) as b, await relay_connect(server.url, carol) as c:
        await a.send_operation(payload, timestamp=1700000000123)
        for socket in (b, c):
            frame = await next_frame(socket)
            assert frame["type"] == "crdt_operation"
            assert frame["payload"] == payload
            assert frame["timestamp"] == 1700000000123
            assert frame["device_id"] == str(alice.device_id)
            assert isinstance(frame["relay_timestamp"], int) and frame["relay_timestamp"] > 1700000000000
            assert frame["seq"] >= 1


async def test_seq_increases_with_every_operation_of_the_book(server, family):
    alice, bob, _ = family
    async with await relay_connect(server.url, alice) as a, await relay_connect(server.url, bob) as b:
        for _ in range(5):
            await a.send_operation(ciphertext())
        seqs = [(await next_frame(b))["seq"] for _ in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


@both_servers
async def test_the_sender_never_gets_its_own_frame_back(server, family):
    alice, bob, _ = family
    async with await relay_connect(server.url, alice) as a, await relay_connect(server.url, bob) as b:
        await a.send_operation(ciphertext())
        await next_frame(b)
        await a.ping()
        # Frames to one socket leave in order: had the operation come back, it would come first.
        assert (await next_frame(a))["type"] == "pong"


async def test_a_second_socket_of_the_sender_device_gets_no_copy_either(server, family):
    alice, bob, _ = family
    async with await relay_connect(server.url, alice) as a1, await relay_connect(server.url, alice) as a2, await relay_connect(server.url, bob) as b:
        await a1.send_operation(ciphertext())
        assert (await next_frame(b))["type"] == "crdt_operation"
        await a2.ping()
        assert (await next_frame(a2))["type"] == "pong"


async def test_a_client_supplied_device_id_or_seq_is_replaced_by_the_servers(server, family):
    alice, bob, _ = family
    async with await relay_connect(server.url, alice) as a, await relay_connect(server.url, bob) as b:
        forged = {"type": "crdt_operation", "payload": ciphertext(), "timestamp": 1, "device_id": str(bob.device_id), "seq": 10**9}
        await a.connection.send(json.dumps(forged))
        frame = await next_frame(b)
    assert frame["device_id"] == str(alice.device_id)
    assert frame["seq"] != 10**9


async def test_other_books_never_receive_a_frame(server, family, neighbours):
    alice, bob, _ = family
    outsider = neighbours[0]
    async with await relay_connect(server.url, alice) as a, await relay_connect(server.url, bob) as b, await relay_connect(server.url, outsider) as n:
        await a.send_operation(ciphertext())
        await next_frame(b)
        await n.ping()
        assert (await next_frame(n))["type"] == "pong"


@both_servers
async def test_presence_tells_peers_when_a_device_comes_online_and_goes_offline(server, family):
    alice, bob, _ = family
    async with await relay_connect(server.url, alice) as a:
        b = await relay_connect(server.url, bob)
        assert await next_frame(a, skip_presence=False) == {"type": "presence", "device_id": str(bob.device_id), "state": "online"}
        # The newcomer learns who was already there.
        assert await next_frame(b, skip_presence=False) == {"type": "presence", "device_id": str(alice.device_id), "state": "online"}
        await b.close()
        assert await next_frame(a, skip_presence=False) == {"type": "presence", "device_id": str(bob.device_id), "state": "offline"}


@both_servers
async def test_ping_is_answered_with_pong(server, family):
    async with await relay_connect(server.url, family[0]) as a:
        await a.ping()
        assert await next_frame(a) == {"type": "pong"}


# --- HTTP send and sync status ------------------------------------------------------------------


async def test_relay_send_reaches_open_sockets_and_answers_delivered_to_and_seq(server, api, family):
    alice, bob, carol = family
    payload = ciphertext(300)
    async with await relay_connect(server.url, bob) as b, await relay_connect(server.url, carol) as c:
        sent = await asyncio.to_thread(api.relay_send, alice, payload, timestamp=42)
        assert sent["delivered_to"] == 2
        for socket in (b, c):
            frame = await next_frame(socket)
            assert (frame["payload"], frame["seq"], frame["device_id"], frame["timestamp"]) == (payload, sent["seq"], str(alice.device_id), 42)


async def test_sync_status_counts_operations_and_shows_who_is_online(server, api, family):
    alice, bob, carol = family
    async with await relay_connect(server.url, alice) as a, await relay_connect(server.url, bob) as b:
        await a.send_operation(ciphertext())
        await next_frame(b)
        status = await asyncio.to_thread(api.sync_status, carol)
    assert status["operation_count"] == 1
    assert status["last_relay_at"] is not None
    assert set(status["devices_online"]) == {str(alice.device_id), str(bob.device_id)}
    by_id = {d["device_id"]: d for d in status["devices"]}
    assert by_id[str(carol.device_id)]["online"] is False
    assert all(d["last_seen_at"] for d in status["devices"])


# --- refusals -----------------------------------------------------------------------------------


async def test_a_socket_without_credentials_is_closed_with_4401(server, family):
    socket = await relay_connect(server.url, family[0], additional_headers={})
    assert await close_code(socket) == 4401


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda d: "not-a-jwt", id="malformed"),
        pytest.param(lambda d: d.book_token(now=1_600_000_000, lifetime_seconds=60), id="expired"),
        pytest.param(
            lambda d: device_token_mint(DeviceKey.generate(), device_id=d.device_id, book_id=d.book_id), id="signed-by-another-key"
        ),
        pytest.param(
            lambda d: device_token_mint(DeviceKey.generate(), device_id=uuid.uuid4(), book_id=d.book_id), id="unknown-device"
        ),
        pytest.param(lambda d: device_token_mint(d.key, device_id=d.device_id), id="registration-token-without-book"),
    ],
)
@both_servers
async def test_a_bad_token_is_closed_with_4401(server, family, make_token):
    socket = await relay_connect(server.url, family[0], token=make_token(family[0]))
    assert await close_code(socket) == 4401


async def test_a_token_for_another_book_is_closed_with_4403(server, family, neighbours):
    socket = await relay_connect(server.url, family[0], book_id=neighbours[0].book_id)
    assert await close_code(socket) == 4403


async def test_a_revoked_devices_new_socket_is_closed_with_4401(server, api, family):
    alice, bob, _ = family
    api.device_revoke(alice, bob.device_id)
    socket = await relay_connect(server.url, bob)
    assert await close_code(socket) == 4401


@both_servers
async def test_a_revoked_devices_open_socket_is_closed_with_4401(server, api, family):
    alice, bob, _ = family
    async with await relay_connect(server.url, bob) as b:
        await b.ping()
        assert (await next_frame(b))["type"] == "pong"
        await asyncio.to_thread(api.device_revoke, alice, bob.device_id)
        assert await close_code(b) == 4401


@both_servers
async def test_an_oversize_frame_is_closed_with_1009(server, family):
    async with await relay_connect(server.url, family[0]) as a:
        await a.send_operation(ciphertext(256 * 1024))  # 256 KiB of ciphertext is ~341 KiB of base64
        assert await close_code(a) == 1009


async def test_a_frame_just_under_the_cap_is_relayed(server, family):
    alice, bob, _ = family
    payload = ciphertext(190 * 1024)
    async with await relay_connect(server.url, alice) as a, await relay_connect(server.url, bob) as b:
        await a.send_operation(payload)
        assert (await next_frame(b))["payload"] == payload


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not json", id="not-json"),
        pytest.param('{"type": "crdt_operation", "payload": "***", "timestamp": 1}', id="payload-not-base64"),
        pytest.param('{"type": "crdt_operation", "payload": "aGk=", "timestamp": "now"}', id="timestamp-not-a-number"),
        pytest.param('{"type": "subscribe", "book_id": "x"}', id="unknown-type"),
    ],
)
async def test_a_malformed_frame_is_closed_with_4400(server, family, text):
    async with await relay_connect(server.url, family[0]) as a:
        await a.connection.send(text)
        assert await close_code(a) == 4400


@both_servers
async def test_a_binary_frame_is_closed_with_1003(server, family):
    async with await relay_connect(server.url, family[0]) as a:
        await a.connection.send(b"\x00\x01")
        assert await close_code(a) == 1003


# --- browser tickets ----------------------------------------------------------------------------


@both_servers
async def test_a_browser_ticket_opens_one_socket_once(server, api, family):
    alice, bob, _ = family
    ticket = await asyncio.to_thread(api.relay_ticket, alice)
    async with await relay_connect(server.url, alice, ticket=ticket) as a, await relay_connect(server.url, bob) as b:
        assert a.connection.subprotocol == "homepocket.v1"
        await a.send_operation(ciphertext())
        assert (await next_frame(b))["device_id"] == str(alice.device_id)
    again = await relay_connect(server.url, alice, ticket=ticket)
    assert await close_code(again) == 4401


async def test_a_ticket_works_only_for_its_own_book(server, api, family, neighbours):
    ticket = await asyncio.to_thread(api.relay_ticket, family[0])
    socket = await relay_connect(server.url, family[0], ticket=ticket, book_id=neighbours[0].book_id)
    assert await close_code(socket) == 4403


async def test_an_unknown_ticket_is_closed_with_4401(server, family):
    socket = await relay_connect(server.url, family[0], ticket="x" * 43)
    assert await close_code(socket) == 4401


# --- slow readers -------------------------------------------------------------------------------


@both_servers
async def test_a_reader_that_stops_reading_is_closed_with_4408_and_the_others_keep_receiving(server, family):
    alice, bob, carol = family
    async with await relay_connect(server.url, alice) as a, await relay_connect(server.url, carol) as c:
        # bob's client stops taking frames off the connection: its buffers, then the server's
        # bounded outbox for it, fill up.
        b = await relay_connect(server.url, bob, max_queue=1)
        payload = ciphertext(150 * 1024)
        received = 0
        for _ in range(120):
            await a.send_operation(payload)
            await next_frame(c)  # carol keeps up, frame by frame
            received += 1
        assert received == 120
        assert await close_code(b, timeout=30) == 4408
