"""The limiter engine: one atomic check-and-consume over one or more limits, two stores.

Algorithm (docs/quotas.md): short windows (minute, 10 minutes, hour) are *sliding logs*: the
store keeps the time of each allowed request within the window, so "10 per hour" means never
more than 10 in any hour, with no 2x burst at a window edge (what a fixed window allows) and no
approximation (what a sliding-window counter or GCRA's rate semantics would give). Day and month
quotas are *calendar windows* in UTC counted by one integer, reset at midnight / the first of
the month, which is how people read a quota and how `reset` can be shown.

Every check over several limits (an API key's minute, day and month) is all-or-nothing in one
step: all are read, and only if every one has room is each consumed. A refused request consumes
nothing, so a client hammering a closed limit does not push its own reset further away.
In the distributed mode that step is one Lua script, one Redis round trip
(apps/quotas/store_redis.py); in the embedded mode (one web process) the same algorithm runs
under a lock in memory.

The clock is the caller's (`now()` here), not Redis's TIME: nodes' clocks are NTP-close, and
tests move time by patching `now`.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timezone

from apps.quotas.models import Window

SLIDING_SECONDS = {Window.MINUTE: 60, Window.TEN_MINUTES: 600, Window.HOUR: 3600}


def now() -> float:
    """Epoch seconds; tests patch this to move time."""
    return time.time()


@dataclass(frozen=True)
class Limit:
    key: str  # e.g. "pairing.generate:device:<uuid>[:d20261124]"
    limit: int
    window_ms: int
    calendar_end_ms: int = 0  # calendar windows: when this window ends; 0 for sliding ones

    @property
    def sliding(self) -> bool:
        return self.calendar_end_ms == 0


@dataclass(frozen=True)
class Count:
    used: int  # after this request when it was allowed and consumed
    reset_ms: int  # sliding: when the oldest counted request leaves the window; calendar: window end


@dataclass(frozen=True)
class CheckResult:
    allowed: bool
    counts: list[Count]
    refused_index: int | None = None  # which limit refused
    first_refusal: bool = False  # the first refusal by that limit in its window (audit it once)


class StoreUnavailable(Exception):
    """The counter store cannot be reached; the caller applies the policy's fail mode."""


def window_limit(*, key: str, limit: int, window: str, at: float) -> Limit:
    """The Limit for a policy window at time `at` (calendar windows get their own key per period)."""
    if window in SLIDING_SECONDS:
        return Limit(key=key, limit=limit, window_ms=SLIDING_SECONDS[window] * 1000)
    start, end = calendar_bounds(window, at)
    suffix = start.strftime("d%Y%m%d" if window == Window.DAY else "m%Y%m")
    return Limit(
        key=f"{key}:{suffix}", limit=limit, window_ms=int((end - start).total_seconds() * 1000),
        calendar_end_ms=int(end.timestamp() * 1000),
    )  # fmt: skip


def calendar_bounds(window: str, at: float) -> tuple[datetime, datetime]:
    moment = datetime.fromtimestamp(at, tz=timezone.utc)
    if window == Window.DAY:
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=timezone.utc)
    if window == Window.MONTH:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return start, start.replace(year=year, month=month)
    raise ValueError(f"not a calendar window: {window}")


class MemoryStore:
    """The embedded mode's store: the Redis script's algorithm, in this process, under one lock.

    Exact because the embedded mode runs one web process (serve refuses more); the distributed
    mode always uses Redis, whose script is the single point of truth for all nodes.
    """

    PRUNE_EVERY = 10_000

    def __init__(self):
        self._lock = threading.Lock()
        self._logs: dict[str, list[int]] = {}  # sliding: sorted times (ms) of counted requests
        self._counters: dict[str, tuple[int, int]] = {}  # calendar: (count, window end ms)
        self._refusal_flags: dict[str, int] = {}  # key -> until (ms)
        self._calls = 0

    def check(self, limits: list[Limit], *, now_ms: int, consume: bool = True) -> CheckResult:
        with self._lock:
            self._calls += 1
            if self._calls % self.PRUNE_EVERY == 0:
                self._prune(now_ms)
            counts: list[Count] = []
            refused = None
            for index, limit in enumerate(limits):
                used, reset_ms = self._read(limit, now_ms)
                counts.append(Count(used, reset_ms))
                if refused is None and used >= limit.limit:
                    refused = index
            if refused is not None:
                first = False
                if consume:
                    key = limits[refused].key
                    first = self._refusal_flags.get(key, 0) <= now_ms
                    if first:
                        self._refusal_flags[key] = counts[refused].reset_ms
                return CheckResult(False, counts, refused, first)
            if consume:
                counts = [self._consume(limit, now_ms) for limit in limits]
            return CheckResult(True, counts)

    def _read(self, limit: Limit, now_ms: int) -> tuple[int, int]:
        if limit.sliding:
            log = self._logs.get(limit.key, [])
            del log[: bisect_right(log, now_ms - limit.window_ms)]
            return len(log), (log[0] + limit.window_ms if log else now_ms + limit.window_ms)
        count, end = self._counters.get(limit.key, (0, limit.calendar_end_ms))
        return count, limit.calendar_end_ms

    def _consume(self, limit: Limit, now_ms: int) -> Count:
        if limit.sliding:
            log = self._logs.setdefault(limit.key, [])
            log.insert(bisect_right(log, now_ms), now_ms)
            return Count(len(log), log[0] + limit.window_ms)
        count, _ = self._counters.get(limit.key, (0, limit.calendar_end_ms))
        self._counters[limit.key] = (count + 1, limit.calendar_end_ms)
        return Count(count + 1, limit.calendar_end_ms)

    def _prune(self, now_ms: int) -> None:
        """Forget windows that ended, so memory follows the active subjects, not all ever seen."""
        self._counters = {key: value for key, value in self._counters.items() if value[1] > now_ms}
        self._refusal_flags = {key: until for key, until in self._refusal_flags.items() if until > now_ms}
        # A sliding log's newest entry older than the longest window can go.
        horizon = now_ms - max(SLIDING_SECONDS.values()) * 1000
        self._logs = {key: log for key, log in self._logs.items() if log and log[-1] > horizon}
