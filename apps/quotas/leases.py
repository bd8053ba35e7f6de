"""Quota leases: the limiter for hot paths (the sign route), without a Redis round trip per request.

A process takes a *block* of units from the store in one atomic step (the same script as every
check: all policies at once, never past a limit) and spends it in memory. So:

- **Never over a limit in total**: every unit spent was first taken from the shared count.
- **A block is spent within QUOTA_LEASE_SECONDS (1 s) or dropped.** A sliding log records the
  block at the time it was taken, so a unit spent later would count as older than it is; the
  bound is that no window of (W + 1 s) sees more than the limit. Day and month quotas are exact.
- **The cost is unused units**: a block dropped at expiry, or left when the caller stops, was
  counted but not used: each process can refuse up to one block early per window. Blocks are
  small against the limit (a 20th, at most QUOTA_LEASE_UNITS, at least 1), and a limit of 20 or
  less is taken one unit at a time (exact, one round trip each).
- **Refusals are remembered** for min(Retry-After, 1 s), so a caller hammering a closed limit
  costs a dictionary lookup, not a Redis round trip, per request.

Headers: X-RateLimit-Remaining is what the store had left after the block, minus what this
process has spent of it: exact with one process, an upper bound with several.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings

from apps.quotas.services import (
    QuotaGrant,
    QuotaSubjects,
    RateLimitExceeded,
    effective_limit,
    policy_rule,
    quota_units_take,
)


def monotonic() -> float:
    return time.monotonic()  # tests replace it to move past a lease's life


@dataclass
class _Lease:
    units: int = 0
    expires: float = 0.0
    grant: QuotaGrant | None = None
    spent: int = 0
    refusal: RateLimitExceeded | None = None
    refused_until: float = 0.0
    # Nothing limits this caller (or the store is down and its policies fail open): let requests
    # through from memory until then, so an unlimited key costs no thread hop per request.
    free_until: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class QuotaLeases:
    def __init__(self):
        self._leases: dict[tuple, _Lease] = {}

    async def consume(self, *, scopes: tuple[str, ...], subjects: QuotaSubjects, subject_key: str) -> dict[str, str]:
        """Count one request; the X-RateLimit-* headers, or RateLimitExceeded / RateLimitStoreDown."""
        lease = self._leases.setdefault((scopes, subject_key), _Lease())
        headers = self._spend(lease)
        if headers is not None:
            return headers
        return await sync_to_async(self._refill, thread_sensitive=False)(lease, scopes, subjects)

    def _spend(self, lease: _Lease) -> dict[str, str] | None:
        """From memory, or None: the caller refills in a thread (never blocking the event loop here)."""
        now = monotonic()
        if not lease.lock.acquire(blocking=False):
            return None  # a refill is running: wait for it in the thread path
        try:
            return self._take_held(lease, now)
        finally:
            lease.lock.release()

    def _take_held(self, lease: _Lease, now: float) -> dict[str, str] | None:
        """With the lease's lock held: one unit from the block, the remembered refusal, or None."""
        if lease.refusal is not None and now < lease.refused_until:
            raise RateLimitExceeded(lease.refusal.message, details=lease.refusal.details, headers=lease.refusal.headers)
        if lease.units > 0 and now < lease.expires:
            lease.units -= 1
            lease.spent += 1
            return self._headers(lease)
        if now < lease.free_until:
            return {}
        return None

    def _refill(self, lease: _Lease, scopes, subjects: QuotaSubjects) -> dict[str, str]:
        with lease.lock:
            # Another request may have refilled while this one waited for the lock.
            headers = self._take_held(lease, monotonic())
            if headers is not None:
                return headers
            block = self._block_size(scopes, subjects)
            try:
                grant = quota_units_take(scopes=scopes, subjects=subjects, units=block)
            except RateLimitExceeded as refused:
                lease.units, lease.refusal = 0, refused
                retry_after = int(refused.headers.get("Retry-After", "1"))
                lease.refused_until = monotonic() + min(retry_after, settings.QUOTA_LEASE_SECONDS)
                raise
            lease.refusal = None
            if grant is None:  # nothing limits this, or the store is down and the policies fail open
                lease.free_until = monotonic() + settings.QUOTA_LEASE_SECONDS
                return {}
            lease.free_until = 0.0
            lease.grant, lease.spent = grant, 1
            lease.units, lease.expires = grant.units - 1, monotonic() + settings.QUOTA_LEASE_SECONDS
            return self._headers(lease)

    @staticmethod
    def _block_size(scopes, subjects: QuotaSubjects) -> int:
        limits = [
            limit for scope in scopes
            if (rule := policy_rule(scope, subjects.plan)) and (limit := effective_limit(rule, subjects)) is not None
        ]  # fmt: skip
        if not limits:
            return 1
        return max(1, min(settings.QUOTA_LEASE_UNITS, min(limits) // 20))

    @staticmethod
    def _headers(lease: _Lease) -> dict[str, str]:
        grant = lease.grant
        remaining = grant.remaining + grant.units - lease.spent
        return grant.headers(remaining=remaining)

    def forget(self) -> None:
        self._leases.clear()


quota_leases = QuotaLeases()
