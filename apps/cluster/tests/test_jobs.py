"""One run per cluster: the lease (Redis, or a file lock in the embedded mode) and its fencing token."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django_celery_beat.models import IntervalSchedule

from apps.cluster import jobs
from apps.cluster.jobs import JobLeaseLost, job_fenced_atomic, job_lease_acquire, job_run_once
from apps.cluster.models import JobFence
from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def job_name() -> str:
    return f"test-{secrets.token_hex(4)}"


@pytest.fixture
def machine_redis(settings):
    """The machine's Redis under a prefix of this test's own (tests use it in both modes)."""
    settings.CACHE_KEY_PREFIX = f"{settings.CACHE_KEY_PREFIX}:jobs-{secrets.token_hex(4)}"
    client = redis.Redis.from_url(settings.REDIS_URL or "redis://127.0.0.1:6379/0")
    yield client
    for key in client.scan_iter(f"{settings.CACHE_KEY_PREFIX}:*"):
        client.delete(key)


def _wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _start_child(name: str, directory: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "homepocket.settings",
        "HOMEPOCKET_VAR_DIR": str(settings.VAR_DIR),
        "CACHE_KEY_PREFIX": settings.CACHE_KEY_PREFIX,
    }
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    return subprocess.Popen(
        [sys.executable, "-m", "apps.cluster.tests.job_child", name, str(directory)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_two_processes_running_the_same_job_run_it_once(job_name, tmp_path):
    """Two real processes (Redis in the distributed mode, the file lock in the embedded one)."""
    first = _start_child(job_name, tmp_path)
    _wait_for(lambda: list(tmp_path.glob("started-*")) or first.poll() is not None, "the first run to start")
    second = _start_child(job_name, tmp_path)
    second_out, second_err = second.communicate(timeout=60)
    (tmp_path / "release").write_text("")
    first_out, first_err = first.communicate(timeout=60)
    assert (first_out.strip(), second_out.strip()) == ("ran", "skipped"), (first_err, second_err)
    assert [p.name for p in tmp_path.glob("started-*")] == [f"started-{first.pid}"]


def test_the_lease_is_released_when_the_job_finishes(job_name):
    assert job_run_once(job_name, lambda lease: "first") == "first"
    assert job_run_once(job_name, lambda lease: "second") == "second"


def test_the_lease_is_released_when_the_job_fails(job_name):
    def fail(lease):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        job_run_once(job_name, fail)
    assert job_run_once(job_name, lambda lease: "after") == "after"


def test_a_job_started_while_running_is_skipped_in_process(job_name):
    assert job_run_once(job_name, lambda lease: job_run_once(job_name, lambda inner: "inner")) is None


def test_fencing_tokens_grow_with_every_holder(job_name):
    tokens = [job_run_once(job_name, lambda lease: lease.token) for _ in range(3)]
    assert tokens == sorted(tokens) and len(set(tokens)) == 3


def test_the_redis_lease_expires_after_its_ttl_and_renewal_pushes_it_out(job_name, machine_redis):
    lease = job_lease_acquire(job_name, client=machine_redis)
    key = jobs._lock_key(job_name)
    assert 59_000 < machine_redis.pttl(key) <= 60_000
    machine_redis.pexpire(key, 1000)  # as if 59 s had passed
    assert lease.renew() is True
    assert machine_redis.pttl(key) > 59_000
    lease.release()
    assert not machine_redis.exists(key)


def test_a_second_holder_is_refused_while_the_redis_lease_is_held(job_name, machine_redis):
    first = job_lease_acquire(job_name, client=machine_redis)
    assert job_lease_acquire(job_name, client=machine_redis) is None
    first.release()
    assert job_lease_acquire(job_name, client=machine_redis).token == first.token + 1


def test_a_holder_whose_lease_expired_cannot_renew_or_release_the_new_holders(job_name, machine_redis):
    stale = job_lease_acquire(job_name, client=machine_redis)
    machine_redis.delete(jobs._lock_key(job_name))  # the TTL lapsed while the holder was paused
    fresh = job_lease_acquire(job_name, client=machine_redis)
    assert stale.renew() is False
    with pytest.raises(JobLeaseLost):
        stale.check()
    stale.release()
    assert machine_redis.get(jobs._lock_key(job_name)).decode() == fresh.owner


@pytest.mark.django_db
def test_a_stale_holders_fenced_write_is_refused_after_a_newer_holder_wrote(job_name, machine_redis):
    stale = job_lease_acquire(job_name, client=machine_redis)
    machine_redis.delete(jobs._lock_key(job_name))
    fresh = job_lease_acquire(job_name, client=machine_redis)
    with job_fenced_atomic(fresh):
        IntervalSchedule.objects.create(every=4242, period=IntervalSchedule.SECONDS)
    with pytest.raises(JobLeaseLost), job_fenced_atomic(stale):
        IntervalSchedule.objects.create(every=4343, period=IntervalSchedule.SECONDS)
    assert IntervalSchedule.objects.filter(every=4343).count() == 0
    assert JobFence.objects.get(name=job_name).token == fresh.token


@pytest.mark.django_db
def test_a_fenced_write_rolls_back_with_its_fence_when_the_job_fails(job_name, machine_redis):
    lease = job_lease_acquire(job_name, client=machine_redis)
    with pytest.raises(RuntimeError), job_fenced_atomic(lease):
        IntervalSchedule.objects.create(every=4444, period=IntervalSchedule.SECONDS)
        raise RuntimeError("boom")
    assert not IntervalSchedule.objects.filter(every=4444).exists()
    assert not JobFence.objects.filter(name=job_name).exists()


@pytest.mark.django_db
def test_the_same_holder_can_write_twice(job_name, machine_redis):
    lease = job_lease_acquire(job_name, client=machine_redis)
    for every in (4545, 4646):
        with job_fenced_atomic(lease):
            IntervalSchedule.objects.create(every=every, period=IntervalSchedule.SECONDS)
    assert IntervalSchedule.objects.filter(every__in=(4545, 4646)).count() == 2


def test_a_job_is_skipped_not_run_when_redis_is_unreachable(job_name, settings, monkeypatch):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there (a new client: setting_changed)
    ran = []
    assert job_run_once(job_name, lambda lease: ran.append(1)) is None
    assert ran == []


def test_the_embedded_file_lock_excludes_a_second_holder_and_advances_the_token(job_name, settings, tmp_path):
    settings.REDIS_URL = ""
    settings.VAR_DIR = tmp_path
    first = job_lease_acquire(job_name)
    assert first.client is None
    assert job_lease_acquire(job_name) is None
    first.release()
    second = job_lease_acquire(job_name)
    assert second.token == first.token + 1
    second.release()


def test_the_renewer_renews_while_the_job_runs(job_name, machine_redis, monkeypatch, settings):
    renewed = []
    original = jobs.JobLease.renew

    def counting(self):
        renewed.append(self.token)
        return original(self)

    monkeypatch.setattr(jobs.JobLease, "renew", counting)
    monkeypatch.setattr(jobs, "_redis", lambda: machine_redis)
    settings.REDIS_URL = settings.REDIS_URL or "redis://127.0.0.1:6379/0"

    def wait_for_a_renewal(lease):
        _wait_for(lambda: renewed, "a renewal")
        return "ran"

    assert job_run_once(job_name, wait_for_a_renewal, renew_every=0.05) == "ran"
