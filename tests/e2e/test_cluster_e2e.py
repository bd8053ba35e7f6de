"""The cluster behind nginx (tests/harness/cluster.py): what nginx adds, frames crossing nodes, and
one node killed under relay and HTTP load (SIGTERM, then separately SIGKILL).

Collected only in the distributed run (tests/e2e/conftest.py): two nodes need a shared PostgreSQL
and Redis. The kill tests assert that every client came back and no acknowledged write was lost;
how fast they came back is measured by bench/cluster.py (docs/PERFORMANCE.md, "Cluster").
"""

from __future__ import annotations

import asyncio
import signal
import uuid

import httpx
import pytest

from homepocket_client import DeviceIdentity, HomePocketClient
from homepocket_client.relay import relay_connect
from tests.e2e.relay_support import book_of, ciphertext, next_frame
from tests.harness.cluster import PROXY_ADDRESS, Cluster
from tests.harness.live import LOAD_UNLIMITED
from tests.harness.node_kill import kill_under_load, writes_missing

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


def test_nginx_passes_the_clients_request_id_through_and_makes_one_when_absent(live_cluster):
    chosen = f"client-{uuid.uuid4().hex[:12]}"
    response = httpx.get(f"{live_cluster.url}/health", headers={"X-Request-ID": chosen}, timeout=10)
    assert response.headers["x-request-id"] == chosen
    made = httpx.get(f"{live_cluster.url}/health", timeout=10).headers["x-request-id"]
    assert made and made != chosen
    assert f"rid={chosen} " in live_cluster.nginx.log_text()


def test_the_nodes_trust_forwarded_addresses_from_nginx_alone(live_cluster):
    assert all(node.env["TRUSTED_PROXIES"] == f"{PROXY_ADDRESS}/32" for node in live_cluster.nodes)
    assert f"proxy_bind {PROXY_ADDRESS};" in live_cluster.nginx.conf_path.read_text()


def test_requests_through_nginx_reach_both_nodes(live_cluster):
    with HomePocketClient(live_cluster.url, timeout=10) as api:
        for _ in range(20):
            api.create_book(phone := DeviceIdentity.new("spread"))
            assert api.list_devices(phone).devices
    upstreams = {line.rsplit("upstream=", 1)[1].split()[0] for line in live_cluster.nginx.log_text().splitlines() if "upstream=" in line}
    assert {f"127.0.0.1:{node.port}" for node in live_cluster.nodes} <= upstreams


async def test_a_frame_sent_through_nginx_reaches_devices_on_node_1_and_node_2(live_cluster):
    first, second = live_cluster.nodes
    with HomePocketClient(live_cluster.url) as api:
        alice, bob, carol = book_of(api, 3)
    async with (
        await relay_connect(live_cluster.url, alice) as a,
        await relay_connect(first.url, bob) as b,
        await relay_connect(second.url, carol) as c,
    ):
        await a.ping()
        assert (await next_frame(a))["type"] == "pong"
        payload = ciphertext()
        await a.send_operation(payload)
        for socket in (b, c):
            frame = await next_frame(socket)
            assert (frame["payload"], frame["device_id"]) == (payload, str(alice.device_id))
        # And a frame sent on node 1 reaches the device on node 2, whichever node nginx chose for alice.
        await b.send_operation(payload)
        assert (await next_frame(c))["device_id"] == str(bob.device_id)


@pytest.fixture
def kill_cluster(tmp_path):
    """A cluster of the test's own (it loses a node). A short drain, so SIGTERM's path is the
    operator's: /health and /ready say 503 while requests are still served, then the node stops."""
    cluster = Cluster(tmp_path, extra_env={"DRAIN_SECONDS": "3", "GRACEFUL_TIMEOUT_SECONDS": "5"}, celery=False)
    cluster.start(setup=LOAD_UNLIMITED)
    yield cluster
    cluster.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_killing_a_node_under_load_every_socket_comes_back_and_no_acknowledged_write_is_lost(kill_cluster, sig):
    outcome = await kill_under_load(kill_cluster, node=1, sig=sig)

    assert outcome.sockets_lost > 0, "no socket was on the killed node: the load did not spread"
    assert outcome.sockets_back == outcome.sockets_lost
    assert outcome.relay_round_trips > 0
    assert outcome.writes_acknowledged
    assert await asyncio.to_thread(writes_missing, kill_cluster, outcome.writes_acknowledged) == []
    # /ready tells: the node stops answering (after saying 503 while draining on SIGTERM) ...
    assert outcome.node_ready[-1] == "unreachable"
    if sig == signal.SIGTERM:
        assert "503" in outcome.node_ready
    # ... while the cluster, through nginx, stays ready on the other node.
    assert outcome.nginx_ready and set(outcome.nginx_ready) == {200}
    with HomePocketClient(kill_cluster.url, timeout=10) as api:
        alice, bob = book_of(api, 2, "after")
    async with await relay_connect(kill_cluster.url, alice) as a, await relay_connect(kill_cluster.url, bob) as b:
        await a.send_operation("YWZ0ZXI=")
        assert (await next_frame(b))["payload"] == "YWZ0ZXI="
