"""Heartbeats: live for their TTL, gone after it, removed at a clean stop, summed per node."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
import redis

from apps.cluster import heartbeat
from apps.cluster.heartbeat import FileHeartbeats, Heartbeat, HeartbeatWriter, RedisHeartbeats, nodes_live


def _beat(node: str, pid: int, *, seen: float, ttl: float = 30.0, sockets: int = 0, rps: float = 0.0, key_cache=None) -> Heartbeat:
    return Heartbeat(
        node=node, pid=pid, version="1.0.0", started_at=seen - 60, seen_at=seen, expires_at=seen + ttl,
        sockets=sockets, requests_per_second=rps, signer="up", key_cache=key_cache,
    )  # fmt: skip


@pytest.fixture
def store(settings, tmp_path):
    """The mode's own store: Redis under a prefix of this test's own, or files under a fresh var/."""
    if settings.REDIS_URL:
        settings.CACHE_KEY_PREFIX = f"{settings.CACHE_KEY_PREFIX}:hb-{secrets.token_hex(4)}"
        client = redis.Redis.from_url(settings.REDIS_URL)
        yield RedisHeartbeats(client, settings.CACHE_KEY_PREFIX)
        for key in client.scan_iter(f"{settings.CACHE_KEY_PREFIX}:*"):
            client.delete(key)
    else:
        settings.VAR_DIR = tmp_path
        yield FileHeartbeats(tmp_path / "run" / "heartbeats")


def test_a_heartbeat_is_live_within_its_ttl_and_gone_after_it(store):
    now = time.time()
    store.write(_beat("node-a", 11, seen=now, ttl=1.0))
    assert [b.name for b in store.live(now)] == ["node-a/11"]
    assert store.live(now + 1.5) == []


def test_an_expired_heartbeat_leaves_nothing_behind(settings, store):
    now = time.time()
    store.write(_beat("node-a", 12, seen=now, ttl=0.3))
    time.sleep(0.5)
    if settings.REDIS_URL:
        assert store.client.get(store._key("node-a/12")) is None  # Redis dropped the key by its TTL
        assert store.live(time.time() - 10) == []  # even a reader whose clock lags finds nothing
    else:
        assert store.live(time.time()) == []
        assert list(store.directory.glob("*.json")) == []  # the reader removed the dead process's file


def test_a_removed_heartbeat_is_gone_at_once(store):
    now = time.time()
    store.write(_beat("node-a", 13, seen=now))
    store.remove("node-a/13")
    assert store.live(now) == []


def test_nodes_sum_their_processes(store, settings):
    now = time.time()
    store.write(_beat("node-a", 1, seen=now, sockets=2, rps=1.5))
    store.write(_beat("node-a", 2, seen=now, sockets=3, rps=2.0))
    store.write(_beat("node-b", 3, seen=now, sockets=1, rps=0.5))
    nodes = nodes_live(now=now)
    assert [(n.node, n.processes, n.sockets, n.requests_per_second) for n in nodes] == [
        ("node-a", 2, 5, 3.5),
        ("node-b", 1, 1, 0.5),
    ]


def test_a_node_shows_its_signers_key_cache_from_its_newest_beat_not_a_sum_of_its_processes(store):
    # Both processes of node-a ask the same signers: adding their reports would count keys twice.
    now = time.time()
    store.write(_beat("node-a", 1, seen=now - 2, key_cache={"warm": 1, "cool": 0, "invalid": 0}))
    store.write(_beat("node-a", 2, seen=now, key_cache={"warm": 4, "cool": 1, "invalid": 0}))
    store.write(_beat("node-b", 3, seen=now))  # a beat without a report (signers down, or none)
    by_node = {n.node: n.key_cache for n in nodes_live(now=now)}
    assert by_node == {"node-a": {"warm": 4, "cool": 1, "invalid": 0}, "node-b": None}


def test_a_writer_reports_this_process_and_removes_itself(store, settings):
    settings.SIGNER_SOCKETS = []
    settings.NODE_ID = "node-w"
    writer = HeartbeatWriter(store=store)
    beat = asyncio.run(writer.beat())
    assert (beat.node, beat.signer, beat.version) == ("node-w", "none", settings.HOMEPOCKET_VERSION)
    assert [n.node for n in nodes_live()] == ["node-w"]
    writer.remove()
    assert nodes_live() == []
    asyncio.run(writer.beat())  # a beat racing the shutdown does not come back
    assert nodes_live() == []


def test_the_node_id_defaults_to_the_host_name(settings):
    settings.NODE_ID = ""
    assert heartbeat.node_id()
