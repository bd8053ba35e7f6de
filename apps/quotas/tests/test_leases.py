"""Quota leases for hot paths: never over the limit, one store call per block, refusals remembered."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from apps.quotas import leases, limiter, services
from apps.quotas.leases import QuotaLeases
from apps.quotas.models import ApiKey
from apps.quotas.services import QuotaSubjects, RateLimitExceeded, RateLimitStoreDown

pytestmark = [pytest.mark.django_db, pytest.mark.anyio]

SCOPES = ("api_key.minute", "api_key.day", "api_key.month")


@pytest.fixture(autouse=True)
def _audit_buffered(settings):
    """Refills run in worker threads; their quota.exceeded events wait in the buffer, and are
    written here in the test's own transaction (a worker thread's write would wait on its lock)."""
    from apps.audit.services import audit_buffer

    settings.AUDIT_FLUSH_INTERVAL = 3600
    yield
    audit_buffer.stop()


@pytest.fixture
def store_calls(monkeypatch):
    calls = []
    real = services.quota_units_take

    def counting(**kwargs):
        calls.append(kwargs["units"])
        return real(**kwargs)

    monkeypatch.setattr(leases, "quota_units_take", counting)
    return calls


@pytest.fixture
def clocks(monkeypatch):
    class Clocks:
        at = 1_795_000_000.0
        mono = 1000.0

        def advance(self, seconds):
            self.at += seconds
            self.mono += seconds

    clocks = Clocks()
    monkeypatch.setattr(limiter, "now", lambda: clocks.at)
    monkeypatch.setattr(leases, "monotonic", lambda: clocks.mono)
    return clocks


def caller(**limits) -> tuple[QuotaSubjects, str]:
    key = ApiKey(pk=uuid.uuid4(), name="signer", scopes=["signing"], **limits)  # the limits are the key's own
    return QuotaSubjects(api_key=key, plan="service"), str(key.pk)


async def attempt(pool, subjects, key) -> bool:
    try:
        await pool.consume(scopes=SCOPES, subjects=subjects, subject_key=key)
        return True
    except RateLimitExceeded:
        return False


async def test_concurrent_requests_never_pass_the_limit(clocks):
    subjects, key = caller(rpm=50)
    pool = QuotaLeases()
    results = await asyncio.gather(*(attempt(pool, subjects, key) for _ in range(200)))
    assert sum(results) == 50


async def test_a_block_is_spent_from_memory(clocks, store_calls):
    subjects, key = caller(rpm=2000)  # blocks of 2000 // 20 = 100
    pool = QuotaLeases()
    for _ in range(250):
        assert await attempt(pool, subjects, key)
    assert store_calls == [100, 100, 100]


async def test_headers_count_down_within_a_block(clocks):
    subjects, key = caller(rpm=200)  # blocks of 10
    pool = QuotaLeases()
    remaining = [int((await pool.consume(scopes=SCOPES, subjects=subjects, subject_key=key))["X-RateLimit-Remaining"]) for _ in range(12)]
    assert remaining == list(range(199, 187, -1))


async def test_an_expired_block_is_dropped_and_its_units_stay_counted(clocks, store_calls):
    subjects, key = caller(rpm=200, daily=1000)  # blocks of 10
    pool = QuotaLeases()
    await attempt(pool, subjects, key)
    clocks.advance(1.5)  # past QUOTA_LEASE_SECONDS: the 9 unspent units are not used later
    await attempt(pool, subjects, key)
    assert store_calls == [10, 10]
    usage = {u.scope: u for u in services.quota_usage(subjects=subjects)}
    assert usage["api_key.day"].used == 20  # conservative: never less than what was spent


async def test_a_small_limit_is_taken_one_unit_at_a_time(clocks, store_calls):
    subjects, key = caller(rpm=5)
    pool = QuotaLeases()
    results = [await attempt(pool, subjects, key) for _ in range(6)]
    assert results == [True] * 5 + [False]
    assert store_calls == [1] * 6


async def test_a_refusal_is_remembered_without_asking_the_store(clocks, store_calls):
    subjects, key = caller(rpm=1)
    pool = QuotaLeases()
    assert [await attempt(pool, subjects, key) for _ in range(5)] == [True, False, False, False, False]
    assert len(store_calls) == 2
    clocks.advance(60)
    assert await attempt(pool, subjects, key)


async def test_a_closed_policy_refuses_when_the_store_is_down(clocks, settings):
    settings.RATELIMIT_REDIS_URL = "redis://127.0.0.1:1/0"
    subjects, key = caller(rpm=100)
    with pytest.raises(RateLimitStoreDown):
        await QuotaLeases().consume(scopes=SCOPES, subjects=subjects, subject_key=key)


async def test_an_unlimited_key_is_not_counted(clocks, store_calls):
    subjects, key = caller()
    assert await QuotaLeases().consume(scopes=SCOPES, subjects=subjects, subject_key=key) == {}
