"""The limiter engine, in the store of the mode under test (Redis's script, or memory) and in memory."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from apps.quotas.limiter import MemoryStore, window_limit
from apps.quotas.models import Window
from apps.quotas.services import limiter_store

T0 = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc).timestamp()


@pytest.fixture(params=["mode", "memory"])
def store(request):
    """The mode's store (RedisStore in the distributed run, MemoryStore in the embedded one) and memory."""
    return limiter_store() if request.param == "mode" else MemoryStore()


def hourly(key="pairing.generate:device:a", limit=3, at=T0):
    return window_limit(key=key, limit=limit, window=Window.HOUR, at=at)


def ms(seconds: float) -> int:
    return int(seconds * 1000)


def test_a_sliding_window_allows_exactly_its_limit_then_refuses(store):
    results = [store.check([hourly()], now_ms=ms(T0 + i)) for i in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.counts[0].used for r in results[:3]] == [1, 2, 3]


def test_a_refusal_consumes_nothing_so_the_reset_does_not_move(store):
    for i in range(3):
        store.check([hourly()], now_ms=ms(T0 + i))
    first = store.check([hourly()], now_ms=ms(T0 + 100))
    second = store.check([hourly()], now_ms=ms(T0 + 200))
    assert not first.allowed and not second.allowed
    assert first.counts[0].reset_ms == second.counts[0].reset_ms == ms(T0 + 3600)
    assert second.counts[0].used == 3


def test_a_sliding_window_frees_a_slot_when_the_oldest_request_leaves_it(store):
    for i in range(3):
        store.check([hourly()], now_ms=ms(T0 + i * 60))
    assert not store.check([hourly()], now_ms=ms(T0 + 3599)).allowed
    again = store.check([hourly()], now_ms=ms(T0 + 3600))
    assert again.allowed
    # The second request (T0 + 60 s) is now the oldest: the next slot frees an hour after it.
    assert again.counts[0].reset_ms == ms(T0 + 60 + 3600)
    assert not store.check([hourly()], now_ms=ms(T0 + 3601)).allowed


def test_a_sliding_window_never_allows_a_double_burst_across_a_boundary(store):
    for i in range(3):
        assert store.check([hourly()], now_ms=ms(T0 + 3500 + i)).allowed
    # A fixed hourly window would reset at T0 + 3600 and allow three more at once.
    assert not store.check([hourly()], now_ms=ms(T0 + 3700)).allowed


def test_a_daily_quota_resets_at_midnight_utc(store):
    def daily(at):
        return window_limit(key="photos.upload:book:b", limit=2, window=Window.DAY, at=at)

    late = datetime(2026, 11, 24, 23, 59, tzinfo=timezone.utc).timestamp()
    assert store.check([daily(late)], now_ms=ms(late)).allowed
    second = store.check([daily(late)], now_ms=ms(late))
    assert second.allowed and second.counts[0].reset_ms == ms(datetime(2026, 11, 25, tzinfo=timezone.utc).timestamp())
    assert not store.check([daily(late)], now_ms=ms(late)).allowed
    next_day = late + 120
    assert store.check([daily(next_day)], now_ms=ms(next_day)).counts[0].used == 1


def test_a_monthly_window_ends_on_the_first_of_the_next_month():
    december = datetime(2026, 12, 31, 12, tzinfo=timezone.utc).timestamp()
    limit = window_limit(key="k", limit=1, window=Window.MONTH, at=december)
    assert limit.calendar_end_ms == ms(datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp())
    assert limit.key.endswith(":m202612")


def test_several_limits_are_consumed_all_or_nothing(store):
    minute = window_limit(key="api_key.minute:api_key:k", limit=5, window=Window.MINUTE, at=T0)
    day = window_limit(key="api_key.day:api_key:k", limit=1, window=Window.DAY, at=T0)
    assert store.check([minute, day], now_ms=ms(T0)).allowed
    refused = store.check([minute, day], now_ms=ms(T0 + 1))
    assert not refused.allowed and refused.refused_index == 1
    # The minute limit was not charged for the refused request.
    assert store.check([minute], now_ms=ms(T0 + 2), cost=0).counts[0].used == 1


def test_only_the_first_refusal_in_a_window_is_flagged_first(store):
    limit = hourly(limit=1)
    store.check([limit], now_ms=ms(T0))
    flags = [store.check([limit], now_ms=ms(T0 + i)).first_refusal for i in range(1, 4)]
    assert flags == [True, False, False]
    store.check([limit], now_ms=ms(T0 + 3600))  # allowed again: a new window of refusals
    assert store.check([limit], now_ms=ms(T0 + 3601)).first_refusal


def test_reading_without_consuming_changes_nothing(store):
    store.check([hourly()], now_ms=ms(T0))
    for _ in range(5):
        assert store.check([hourly()], now_ms=ms(T0 + 1), cost=0).counts[0].used == 1
    assert store.check([hourly()], now_ms=ms(T0 + 2)).counts[0].used == 2


@pytest.fixture(params=["mode", "memory"])
def patient_store(request, settings):
    """As `store`, but a check waits up to 30 s for a pooled connection: 200 threads share 32
    connections, and on a busy machine the default 0.25 s wait would fail some checks (the fail
    modes' business, tested elsewhere), not what this test is about."""
    settings.RATELIMIT_STORE_TIMEOUT = 30.0
    return limiter_store() if request.param == "mode" else MemoryStore()


def test_two_hundred_threads_against_a_limit_of_fifty_get_exactly_fifty(patient_store):
    store = patient_store
    limit = hourly(key="concurrency:device:x", limit=50)
    barrier = threading.Barrier(200)
    results = []
    errors = []

    def attempt():
        barrier.wait()
        try:
            results.append(store.check([limit], now_ms=ms(T0)))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(exc))

    threads = [threading.Thread(target=attempt) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    allowed = [r for r in results if r.allowed]
    assert errors == []
    assert len(results) == 200
    assert len(allowed) == 50
    assert sorted(r.counts[0].used for r in allowed) == list(range(1, 51))
