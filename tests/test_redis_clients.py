"""homepocket/redis_clients.py: every Redis client made in one place, bounded blocking pools,
reconnects with backoff, and each user's declared fallback (docs/cluster.md, "Redis")."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import redis

from homepocket import redis_clients
from homepocket.redis_clients import USERS, Fallback, async_client, broadcast, sync_client
from tests.harness.redis_server import PrivateRedis

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def private_redis(tmp_path, settings):
    server = PrivateRedis(tmp_path).start()
    settings.REDIS_URL = server.url
    yield server
    server.stop()
    broadcast.reset()


def test_no_module_but_redis_clients_makes_a_redis_client():
    making = re.compile(r"\bRedis\(|\.from_url\(|ConnectionPool\(|StrictRedis")
    offenders = []
    for path in [*REPO.glob("apps/**/*.py"), *REPO.glob("homepocket/**/*.py")]:
        if "tests" in path.parts or path.name == "redis_clients.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if making.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


def test_every_user_declares_a_fallback_and_a_bounded_pool():
    for user in USERS.values():
        assert isinstance(user.fallback, Fallback) and user.why
        assert user.max_connections >= 1 or user.max_connections_setting


def test_an_async_pool_past_its_size_makes_callers_wait_instead_of_failing(private_redis):
    # "broadcast" has a pool of 2: 300 concurrent commands queue for those two connections.
    async def many():
        client = async_client("broadcast")
        try:
            return await asyncio.gather(*(client.incr("hp-test:counter") for _ in range(300)))
        finally:
            await client.aclose()

    results = asyncio.run(many())
    assert sorted(results) == list(range(1, 301))
    assert int(redis.Redis.from_url(private_redis.url).get("hp-test:counter")) == 300


def test_a_sync_pool_past_its_size_makes_threads_wait_instead_of_failing(private_redis):
    from concurrent.futures import ThreadPoolExecutor

    client = sync_client("broadcast")
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: client.incr("hp-test:threads"), range(200)))
    assert sorted(results) == list(range(1, 201))
    assert client.connection_pool.max_connections == 2


def test_a_client_with_retries_reconnects_after_a_redis_restart(private_redis):
    client = sync_client("broadcast")  # retries with backoff
    assert client.ping()
    private_redis.stop()
    private_redis.start()  # the pooled connection is dead; the retry opens a new one
    assert client.ping()


def test_a_fail_fast_client_raises_at_once_while_redis_is_down_and_works_when_it_is_back(private_redis):
    client = sync_client("jobs")  # fail closed: no retries, the caller skips the run
    assert client.ping()
    private_redis.stop()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    private_redis.start()
    assert client.ping()


def test_the_broadcast_reaches_this_process_through_redis_and_resumes_after_an_outage(private_redis):
    heard = []
    broadcast.subscribe("test.topic", heard.append)
    assert broadcast.wait_listening(10)
    epoch = broadcast.epoch
    assert broadcast.publish("test.topic", {"n": 1})
    _until(lambda: heard == [{"n": 1}])

    private_redis.stop()
    _until(lambda: not broadcast.listening)
    assert broadcast.publish("test.topic", {"n": 2}) is False  # declared fallback: callers poll or bypass
    assert not broadcast.trusted()
    private_redis.start()
    assert broadcast.wait_listening(20)
    assert broadcast.epoch > epoch  # caches loaded before the outage are no longer trusted
    assert broadcast.publish("test.topic", {"n": 3})
    _until(lambda: heard == [{"n": 1}, {"n": 3}])


def test_the_embedded_broadcast_calls_the_handlers_in_this_process(settings):
    settings.REDIS_URL = ""
    heard = []
    broadcast.subscribe("test.embedded", heard.append)
    assert broadcast.trusted() and broadcast.publish("test.embedded", {"n": 1})
    assert heard == [{"n": 1}]


def test_a_user_without_a_url_is_refused_clearly(settings):
    settings.REDIS_URL = ""
    assert not redis_clients.redis_configured("jobs")
    with pytest.raises(RuntimeError, match="REDIS_URL is empty"):
        sync_client("jobs")


def _until(condition, within: float = 10.0):
    import time

    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_listener_stopped_by_a_reset_leaves_the_current_ones_state_alone(private_redis):
    # A listener that a settings change stopped may still be in its backoff or its last poll when
    # the new one subscribes; its exit used to mark the broadcast not listening, for good.
    import threading

    assert broadcast.wait_listening()
    stopped = threading.Event()
    stopped.set()
    broadcast._listen(stopped)  # what a stopped listener does last
    assert broadcast.listening and broadcast.trusted()
