"""The two-level device cache (apps/pairing/device_cache.py) against a private redis-server:
memory, then Redis, then the database; invalidated by the broadcast; bypassed while Redis is down."""

from __future__ import annotations

import json
import time

import pytest
import redis

from apps.pairing import device_cache
from apps.pairing.models import Device
from homepocket.redis_clients import broadcast
from tests.harness.redis_server import PrivateRedis


@pytest.fixture
def private_redis(tmp_path, settings):
    server = PrivateRedis(tmp_path).start()
    settings.REDIS_URL = server.url  # the device_keys and broadcast clients follow (setting_changed)
    settings.DEVICE_CACHE_SECONDS = 3600  # longer than any test: only an invalidation can drop an entry
    settings.DEVICE_CACHE_REDIS_SECONDS = 3600
    device_cache.local_forget()
    assert broadcast.wait_listening(10)
    yield server
    server.stop()
    broadcast.reset()
    device_cache.local_forget()


def until(condition, what: str, within: float = 10.0):
    deadline = time.monotonic() + within
    while not (result := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
    return result


def queries_for_one_read(django_assert_max_num_queries, device_id) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert device_cache.device_get(device_id) is not None
    return len(captured)


@pytest.mark.django_db
def test_a_device_is_read_from_memory_after_its_first_read(private_redis, family, bob, django_assert_max_num_queries):
    assert queries_for_one_read(django_assert_max_num_queries, bob.device_id) == 1
    assert queries_for_one_read(django_assert_max_num_queries, bob.device_id) == 0


@pytest.mark.django_db
def test_another_node_reads_it_from_redis_without_the_database(private_redis, family, bob, django_assert_max_num_queries):
    device_cache.device_get(bob.device_id)
    device_cache.local_forget()  # this process now stands for a second node: its memory is empty
    device = device_cache.device_get(bob.device_id)
    assert queries_for_one_read(django_assert_max_num_queries, bob.device_id) == 0
    assert bytes(device.public_key) == bob.key.public_key_bytes and device.book_id == bob.book_id
    assert device.book.plan == "free" and device.tokens_valid_after is None


@pytest.mark.django_db
def test_a_change_announced_by_another_node_drops_the_entry_from_memory(private_redis, family, bob, django_assert_max_num_queries):
    device_cache.device_get(bob.device_id)
    other_node = redis.Redis.from_url(private_redis.url)
    other_node.publish(broadcast.channel(), json.dumps({"topic": device_cache.TOPIC, "data": {"ids": [str(bob.device_id)]}}))
    until(lambda: str(bob.device_id) not in device_cache._local, "the broadcast never reached this process")


@pytest.mark.django_db
def test_a_change_tombstones_redis_so_a_late_fill_cannot_put_the_old_record_back(private_redis, family, bob):
    old = device_cache.device_get(bob.device_id)
    device_cache.devices_changed([str(bob.device_id)])
    device_cache._to_redis(old)  # a node that read the database just before the change
    assert redis.Redis.from_url(private_redis.url).get(device_cache._key(str(bob.device_id))) == device_cache.TOMBSTONE
    device_cache.local_forget()
    assert device_cache._from_redis(str(bob.device_id)) is None


@pytest.mark.django_db
def test_with_redis_down_every_read_goes_to_the_database_and_sees_a_change_at_once(
    private_redis, family, bob, django_assert_max_num_queries
):
    device_cache.device_get(bob.device_id)
    private_redis.stop()
    until(lambda: not broadcast.listening, "the listener never noticed Redis went away")
    Device.objects.filter(pk=bob.device_id).update(name="renamed while Redis was down")  # no invalidation can travel
    assert device_cache.device_get(bob.device_id).name == "renamed while Redis was down"
    assert queries_for_one_read(django_assert_max_num_queries, bob.device_id) == 1

    private_redis.start()  # back, empty: the cache fills again once the listener is back
    assert broadcast.wait_listening(20)
    device_cache.device_get(bob.device_id)
    until(lambda: queries_for_one_read(django_assert_max_num_queries, bob.device_id) == 0, "the cache never came back")


@pytest.mark.django_db
def test_the_embedded_mode_never_caches(settings, family, bob, django_assert_max_num_queries):
    settings.REDIS_URL = ""
    settings.DEVICE_CACHE_SECONDS = 3600
    for _ in range(2):
        assert queries_for_one_read(django_assert_max_num_queries, bob.device_id) == 1
