"""The optional backlog over real sockets: off by default (resync_required), on when configured."""

from __future__ import annotations

import pytest

from homepocket_client import HomePocketClient
from homepocket_client.relay import relay_connect
from tests.e2e.relay_support import book_of, ciphertext, next_frame
from tests.harness.live import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def test_by_default_nothing_is_kept_and_a_device_behind_is_told_to_resync(live, api):
    alice, bob = book_of(api, 2)
    for _ in range(2):
        api.relay_send(alice, ciphertext())
    async with await relay_connect(live.url, bob, since=0) as b:
        assert await next_frame(b) == {"type": "resync_required"}


@pytest.fixture(scope="module")
def backlog_server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("backlog"), extra_env={"RELAY_BACKLOG_FRAMES": "5"}).start()
    yield server
    server.stop()


async def test_a_device_reconnecting_with_since_gets_what_it_missed_then_live_frames(backlog_server):
    with HomePocketClient(backlog_server.url) as api:
        alice, bob = book_of(api, 2)
        payloads = [ciphertext() for _ in range(3)]
        seqs = [api.relay_send(alice, payload)["seq"] for payload in payloads]
    async with await relay_connect(backlog_server.url, bob, since=seqs[0]) as b, await relay_connect(backlog_server.url, alice) as a:
        missed = [await next_frame(b) for _ in range(2)]
        assert [(f["seq"], f["payload"]) for f in missed] == list(zip(seqs[1:], payloads[1:]))
        await a.send_operation("bGl2ZQ==")
        assert (await next_frame(b))["payload"] == "bGl2ZQ=="


async def test_a_gap_longer_than_the_backlog_is_told_to_resync(backlog_server):
    with HomePocketClient(backlog_server.url) as api:
        alice, bob = book_of(api, 2)
        for _ in range(8):
            api.relay_send(alice, ciphertext())
    async with await relay_connect(backlog_server.url, bob, since=1) as b:
        assert await next_frame(b) == {"type": "resync_required"}


async def test_a_malformed_since_is_closed_with_4400(backlog_server):
    from tests.e2e.relay_support import close_code

    with HomePocketClient(backlog_server.url) as api:
        alice, _ = book_of(api, 2)
    socket = await relay_connect(backlog_server.url, alice, since="-1")
    assert await close_code(socket) == 4400
