"""Hot configuration across two server processes (issue 12, item 5): a change made against node 1
applies on both nodes, a node that was down reads it at start, and with Redis stopped the nodes
still apply a change by polling.

Both nodes share a database and a private redis-server. No assertion on timings (CONVENTIONS):
each wait polls with a generous deadline, and the times seen are printed for the record.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.test_relay_cluster_e2e import node_env
from tests.harness.live import LiveServer
from tests.harness.redis_server import PrivateRedis

pytestmark = [pytest.mark.e2e]

GENEROUS = 60.0


def in_maintenance(server) -> bool:
    """Whether the node refuses a change with 503 MAINTENANCE (else the empty body's 401/400)."""
    response = httpx.post(f"{server.url}/api/v1/books", json={}, timeout=10)
    return response.status_code == 503 and response.json()["error"]["code"] == "MAINTENANCE"


def wait_until(condition, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < GENEROUS, what
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


def test_a_change_applies_on_both_nodes_through_the_broadcast_and_at_start(tmp_path, private_redis):
    # No poll within the test's life: only the announcement or the read at start can apply a change.
    env = node_env(private_redis, HOT_CONFIG_POLL_SECONDS="3600", HOT_CONFIG_SAFETY_SECONDS="3600")
    first = LiveServer(tmp_path / "node1", extra_env=env)
    second = None
    try:
        first.start()
        second = LiveServer(tmp_path / "node2", extra_env={**env, **first.peer_env()}).start(migrate=False)
        assert not in_maintenance(first) and not in_maintenance(second)

        first.manage("hotconfig", "set", "--maintenance", "on", "--message", "upgrading")
        seen = [wait_until(lambda s=s: in_maintenance(s), f"{s.url} never applied maintenance") for s in (first, second)]
        print(f"maintenance on applied: node 1 {seen[0]:.2f} s, node 2 {seen[1]:.2f} s after the command returned")

        # A node that was down during a change reads it at start.
        second.stop(keep_database=True)
        first.manage("hotconfig", "set", "--maintenance", "off")
        wait_until(lambda: not in_maintenance(first), "node 1 never left maintenance")
        second = LiveServer(tmp_path / "node2b", extra_env={**env, **first.peer_env()}).start(migrate=False)
        wait_until(lambda: not in_maintenance(second), "the restarted node never read the change")
    finally:
        if second is not None:
            second.stop()
        first.stop()


def test_with_redis_stopped_both_nodes_apply_a_change_by_polling(tmp_path, private_redis):
    env = node_env(private_redis, HOT_CONFIG_POLL_SECONDS="2")
    first = LiveServer(tmp_path / "node1", extra_env=env)
    second = None
    try:
        first.start()
        second = LiveServer(tmp_path / "node2", extra_env={**env, **first.peer_env()}).start(migrate=False)
        assert not in_maintenance(second)
        private_redis.stop()  # no announcement can travel now
        first.manage("hotconfig", "set", "--maintenance", "on")
        seen = [wait_until(lambda s=s: in_maintenance(s), f"{s.url} never polled the change") for s in (first, second)]
        print(f"with Redis down, maintenance on applied: node 1 {seen[0]:.2f} s, node 2 {seen[1]:.2f} s (poll every 2 s)")
        assert "hot configuration applied" in second.log_text()
    finally:
        if second is not None:
            second.stop()
        first.stop()
