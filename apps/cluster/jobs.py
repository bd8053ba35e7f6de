"""Jobs that run once per cluster: a lease with a TTL and a fencing token around each periodic task.

Beat runs once per cluster by design, but deployments end up with two (a rolling deploy, a second
`manage.py serve`, an operator's `celery call`), and a worker may pick up a task while another
still runs it. So each periodic task runs inside `job_run_once(name, fn)`:

- **Distributed mode** (REDIS_URL): `SET key owner NX PX 60000` and, in the same Lua script,
  `INCR` of the job's fence counter, which is the lease's fencing token. A thread renews the TTL
  every 20 s while the job runs (only while the key still holds our owner value); the key is
  deleted on finish (again only if still ours). A second runner finds the key and skips.
- **Embedded mode** (no Redis): an exclusive `flock` on `var/run/jobs/<name>.lock`: every process
  of an embedded deployment runs on one machine, and the kernel releases the lock when the holder
  dies. The fencing token is a counter file advanced under that lock.
- **Fencing**: the TTL makes a dead holder's lock expire, but a holder that was only paused past
  it would wake up and write after the next holder started. Writes that must not interleave run in
  `job_fenced_atomic(lease)`: in the same transaction as the write, the job's `JobFence` row is
  advanced to the lease's token only if it is not already higher; a stale holder's transaction
  is rolled back with `JobLeaseLost`.
- **Redis unreachable**: the run is skipped (fail closed, logged, counted): the next beat retries,
  and a cleanup that waits a period is better than one that runs twice at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from prometheus_client import Counter

from homepocket.redis_clients import sync_client

logger = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 60
RENEW_EVERY_SECONDS = LOCK_TTL_SECONDS / 3

JOB_RUNS = Counter(
    "homepocket_cluster_job_runs_total",
    "Periodic job attempts by outcome (ran, skipped_locked, skipped_store_down, lease_lost, failed).",
    ["job", "outcome"],
)

# KEYS[1] lock, KEYS[2] fence counter; ARGV[1] owner, ARGV[2] ttl ms. Returns the fencing token, or 0.
_ACQUIRE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('incr', KEYS[2])
end
return 0
"""
# Renew or release only a lock that is still ours (never another holder's after our TTL lapsed).
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class JobLeaseLost(Exception):
    """A newer holder has the job: this holder's writes must not land."""


class JobStoreUnavailable(Exception):
    """The lock store (Redis) did not answer."""


def _lock_key(name: str) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:job:{name}:lock"


def _fence_key(name: str) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:job:{name}:fence"


def _redis():
    """This process's client for job leases ("jobs" in homepocket/redis_clients.py: small pool, fail closed)."""
    return sync_client("jobs")


@dataclass
class JobLease:
    """One holder's right to run `name`, with its fencing token."""

    name: str
    token: int
    owner: str
    client: Any = None  # Redis client (distributed); None with the embedded file lock
    lock_file: Any = None
    ttl_seconds: int = LOCK_TTL_SECONDS
    lost: threading.Event = field(default_factory=threading.Event)

    def renew(self) -> bool:
        """Push the TTL out again; False (and `lost` set) when the lock is no longer ours."""
        if self.client is None:
            return True  # a flock lasts as long as its holder
        try:
            ours = bool(self.client.eval(_RENEW, 1, _lock_key(self.name), self.owner, self.ttl_seconds * 1000))
        except Exception:
            logger.warning("job lease renewal failed", extra={"job": self.name})
            return True  # unknown: keep running; the fence still refuses a stale write
        if not ours:
            self.lost.set()
        return ours

    def check(self) -> None:
        """Raise JobLeaseLost if a renewal found the lock taken over (call between steps)."""
        if self.lost.is_set():
            raise JobLeaseLost(self.name)

    def release(self) -> None:
        if self.client is not None:
            try:
                self.client.eval(_RELEASE, 1, _lock_key(self.name), self.owner)
            except Exception:
                logger.warning("job lease release failed; it expires with its TTL", extra={"job": self.name})
        elif self.lock_file is not None:
            fcntl.flock(self.lock_file, fcntl.LOCK_UN)
            self.lock_file.close()
            self.lock_file = None


def job_lease_acquire(name: str, *, client=None, ttl_seconds: int = LOCK_TTL_SECONDS) -> JobLease | None:
    """Take the job's lease, or None when another holder has it (raises JobStoreUnavailable)."""
    owner = f"{os.getpid()}:{secrets.token_hex(8)}"
    if client is None and settings.REDIS_URL:
        client = _redis()
    if client is not None:
        try:
            token = int(client.eval(_ACQUIRE, 2, _lock_key(name), _fence_key(name), owner, ttl_seconds * 1000))
        except Exception as exc:
            raise JobStoreUnavailable(str(exc)) from exc
        return JobLease(name=name, token=token, owner=owner, client=client, ttl_seconds=ttl_seconds) if token else None
    return _file_lease_acquire(name, owner)


def _file_lease_acquire(name: str, owner: str) -> JobLease | None:
    directory = Path(settings.VAR_DIR) / "run" / "jobs"
    directory.mkdir(parents=True, exist_ok=True)
    lock_file = open(directory / f"{name}.lock", "a+")  # noqa: SIM115 (held for the lease's life)
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        return None
    fence = directory / f"{name}.fence"
    token = int(fence.read_text() or 0) + 1 if fence.exists() else 1
    fence.write_text(str(token))  # under the flock: no other process advances it meanwhile
    return JobLease(name=name, token=token, owner=owner, lock_file=lock_file)


class _Renewer(threading.Thread):
    def __init__(self, lease: JobLease, every: float):
        super().__init__(name=f"job-renew-{lease.name}", daemon=True)
        self.lease, self.every, self.stopped = lease, every, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            if not self.lease.renew():
                logger.warning("job lease taken over while running", extra={"job": self.lease.name})
                return


def job_run_once(name: str, fn: Callable[[JobLease], Any], *, renew_every: float = RENEW_EVERY_SECONDS) -> Any:
    """Run fn(lease) if no other process in the cluster is running job `name`; else skip (None)."""
    try:
        lease = job_lease_acquire(name)
    except JobStoreUnavailable:
        JOB_RUNS.labels(name, "skipped_store_down").inc()
        logger.warning("job skipped: lock store unreachable", extra={"job": name})
        return None
    if lease is None:
        JOB_RUNS.labels(name, "skipped_locked").inc()
        logger.info("job skipped: running elsewhere", extra={"job": name})
        return None
    renewer = _Renewer(lease, renew_every)
    renewer.start()
    outcome = "failed"
    try:
        result = fn(lease)
        outcome = "ran"
        logger.info("job ran", extra={"job": name, "fencing_token": lease.token})
        return result
    except JobLeaseLost:
        outcome = "lease_lost"
        logger.warning("job stopped: lease lost", extra={"job": name, "fencing_token": lease.token})
        return None
    finally:
        renewer.stopped.set()
        lease.release()
        JOB_RUNS.labels(name, outcome).inc()


_FENCE_ADVANCE = (
    "INSERT INTO cluster_jobfence (name, token) VALUES (%s, %s) "
    "ON CONFLICT (name) DO UPDATE SET token = excluded.token WHERE cluster_jobfence.token <= excluded.token"
)


class job_fenced_atomic(transaction.Atomic):  # noqa: N801 (used like transaction.atomic)
    """`transaction.atomic()` that first advances the job's fence to the lease's token, or raises JobLeaseLost.

    The advance and the job's writes commit together: once a newer holder has written, an older
    one's transaction is refused before it changes anything.
    """

    def __init__(self, lease: JobLease):
        super().__init__(using=None, savepoint=True, durable=False)
        self.lease = lease

    def __enter__(self):
        super().__enter__()
        self.lease.check()
        with connection.cursor() as cursor:
            cursor.execute(_FENCE_ADVANCE, [self.lease.name, self.lease.token])
            advanced = cursor.rowcount
        if advanced != 1:
            exc = JobLeaseLost(self.lease.name)
            super().__exit__(type(exc), exc, None)
            raise exc
