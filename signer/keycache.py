"""The signer's caches of unwrapped secrets, with WARM / COOL / INVALID states and single-flight loads.

An entry is WARM while it is young and has uses to spare. It turns COOL inside its refresh window
(the window before the soft TTL, ±10% jitter per entry so keys loaded together do not all refresh
together) or at the low-water mark of remaining uses: it keeps serving while exactly one
background load replaces it. It is INVALID at the hard TTL or at its use limit (or once marked
so): it serves nothing until a load finishes. One load per key at a time, however many callers
ask (single flight): they share the task.

Time comes from the module's `now()` (monotonic seconds), which tests replace to move the clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Awaitable, Callable, Hashable


def now() -> float:
    return time.monotonic()


class State(str, Enum):
    WARM = "warm"
    COOL = "cool"
    INVALID = "invalid"


@dataclass(frozen=True)
class Policy:
    soft_ttl: float
    hard_ttl: float
    max_uses: int | None
    refresh_window: float = 120.0
    jitter: float = 0.10
    low_water: int = 0
    # After a failed background refresh, wait this long before the next attempt.
    retry_after_failure: float = 5.0


# Private keys: soft 15 min, hard 16 min, at most 10^6 signatures, refresh below 500 uses left.
KEY_POLICY = Policy(soft_ttl=15 * 60, hard_ttl=16 * 60, max_uses=1_000_000, low_water=500)
# Data keys: soft 55 min, hard 60 min; a private-key refresh within that needs no master key call.
DEK_POLICY = Policy(soft_ttl=55 * 60, hard_ttl=60 * 60, max_uses=None)


@dataclass
class Entry:
    value: Any
    loaded_at: float
    refresh_at: float
    hard_at: float
    max_uses: int | None
    low_water_uses: int | None
    uses: int = 0
    invalid: bool = False
    next_attempt_at: float = 0.0

    def state(self, t: float) -> State:
        if self.invalid or t >= self.hard_at or (self.max_uses is not None and self.uses >= self.max_uses):
            return State.INVALID
        if t >= self.refresh_at or (self.low_water_uses is not None and self.uses >= self.low_water_uses):
            return State.COOL
        return State.WARM


Loader = Callable[..., Awaitable[Any]]


@dataclass
class CacheStats:
    loads: int = 0  # unlocks (misses, INVALID) and refreshes (COOL) that ran
    refreshes: int = 0
    unlocks: int = 0
    failures: int = 0
    load_seconds: list[float] = field(default_factory=list)


class ExpiringCache:
    """Entries by key under one Policy; `load(key, *args)` runs the loader once per key at a time."""

    def __init__(self, policy: Policy, loader: Loader, *, name: str, on_load: Callable[[str, str, float], None] | None = None):
        self.policy = policy
        self.loader = loader
        self.name = name
        self.entries: dict[Hashable, Entry] = {}
        self.loading: dict[Hashable, asyncio.Task] = {}
        self.stats = CacheStats()
        self._on_load = on_load

    def put(self, key: Hashable, value: Any) -> Entry:
        p = self.policy
        t = now()
        window = p.refresh_window * (1 + random.uniform(-p.jitter, p.jitter))
        entry = Entry(
            value=value,
            loaded_at=t,
            refresh_at=t + p.soft_ttl - window,
            hard_at=t + p.hard_ttl,
            max_uses=p.max_uses,
            low_water_uses=None if p.max_uses is None else p.max_uses - p.low_water,
        )
        self.entries[key] = entry
        return entry

    def lookup(self, key: Hashable) -> tuple[State, Entry | None]:
        entry = self.entries.get(key)
        if entry is None:
            return State.INVALID, None
        return entry.state(now()), entry

    def invalidate(self, key: Hashable) -> None:
        entry = self.entries.get(key)
        if entry is not None:
            entry.invalid = True

    def load(self, key: Hashable, *args: Any, kind: str = "unlock") -> asyncio.Task:
        """The one load of `key` in flight, started now if there is none (single flight)."""
        task = self.loading.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run(key, args, kind))
            # A background refresh has no awaiter: fetch its error so it is not reported as lost.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self.loading[key] = task
        return task

    def refresh_in_background(self, key: Hashable, entry: Entry, *args: Any) -> None:
        """A COOL entry: start its one refresh unless one runs or the last failed just now."""
        if key in self.loading or now() < entry.next_attempt_at:
            return
        self.load(key, *args, kind="refresh")

    async def _run(self, key: Hashable, args: tuple, kind: str) -> Entry:
        started = time.perf_counter()
        outcome = "ok"
        try:
            value = await self.loader(key, *args)
            return self.put(key, value)
        except BaseException:
            outcome = "error"
            self.stats.failures += 1
            entry = self.entries.get(key)
            if entry is not None:
                entry.next_attempt_at = now() + self.policy.retry_after_failure
            raise
        finally:
            elapsed = time.perf_counter() - started
            self.stats.loads += 1
            if kind == "refresh":
                self.stats.refreshes += 1
            else:
                self.stats.unlocks += 1
            if self._on_load:
                self._on_load(kind, outcome, elapsed)
            self.loading.pop(key, None)

    def state_counts(self) -> dict[str, int]:
        t = now()
        counts = {s.value: 0 for s in State}
        for entry in self.entries.values():
            counts[entry.state(t).value] += 1
        return counts

    def evict_expired(self) -> int:
        """Drop entries past their hard TTL so plaintext does not linger; returns how many."""
        t = now()
        dead = [k for k, e in self.entries.items() if e.state(t) is State.INVALID and k not in self.loading]
        for k in dead:
            del self.entries[k]
        return len(dead)
