"""Where the abuse signals keep their counts (CONVENTIONS 10: the one owner of these Redis keys).

A subject is `"api_key:<id>"` or `"device:<id>"`; a minute is a Unix minute number; an address
arrives here only as a keyed hash (apps/quotas/abuse.py), never in clear.

- **distributed** (`REDIS_URL`, the declared user `abuse`), under ABUSE_KEY_PREFIX:
  `n:<minute>` a hash subject -> requests, every node `HINCRBY`-ing into it (TTL 10 minutes);
  `a:<subject>:<minute>` a HyperLogLog of the address hashes (`PFADD`; `PFCOUNT` over the window's
  keys is the union's size; TTL the window); `b:<subject>` the usual rate, "rate minutes"
  (TTL ABUSE_BASELINE_DAYS, renewed at every fold); `claim:<name>` `SET NX EX`, so a minute is
  folded, and a tick judged, by one node of the cluster.
- **embedded** (one web process): the same in this process's memory, under a lock, pruned as
  minutes pass. Exact sets instead of HyperLogLogs, at most ABUSE_IP_LIMIT + 1 hashes per subject
  and minute (a minute with more is already "many"; below that the union is exact).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings

COUNTS_TTL_SECONDS = 600


@dataclass(frozen=True)
class Baseline:
    rate: float  # requests per active minute, exponentially weighted
    minutes: int  # active minutes folded into it


class RedisAbuseStore:
    def __init__(self, client, prefix: str):
        self.client, self.prefix = client, prefix

    def add(self, minute: int, counts: dict[str, int], addresses: dict[str, set[str]]) -> None:
        window_ttl = (settings.ABUSE_IP_WINDOW_MINUTES + 1) * 60
        counts_key = f"{self.prefix}:n:{minute}"
        with self.client.pipeline(transaction=False) as pipe:
            for subject, requests in counts.items():
                pipe.hincrby(counts_key, subject, requests)
            pipe.expire(counts_key, COUNTS_TTL_SECONDS)
            for subject, hashes in addresses.items():
                key = f"{self.prefix}:a:{subject}:{minute}"
                pipe.pfadd(key, *hashes)
                pipe.expire(key, window_ttl)
            pipe.execute()

    def minute_counts(self, minute: int) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.client.hgetall(f"{self.prefix}:n:{minute}").items()}

    def distinct_addresses(self, subjects: list[str], last_minute: int, minutes: int) -> dict[str, int]:
        with self.client.pipeline(transaction=False) as pipe:
            for subject in subjects:
                pipe.pfcount(*(f"{self.prefix}:a:{subject}:{m}" for m in range(last_minute - minutes + 1, last_minute + 1)))
            return dict(zip(subjects, pipe.execute()))

    def baselines(self, subjects: list[str]) -> dict[str, Baseline]:
        if not subjects:
            return {}
        values = self.client.mget([f"{self.prefix}:b:{subject}" for subject in subjects])
        found = {}
        for subject, value in zip(subjects, values):
            if value is not None:
                rate, minutes = value.decode().split()
                found[subject] = Baseline(float(rate), int(minutes))
        return found

    def baselines_save(self, baselines: dict[str, Baseline]) -> None:
        ttl = settings.ABUSE_BASELINE_DAYS * 86400
        with self.client.pipeline(transaction=False) as pipe:
            for subject, baseline in baselines.items():
                pipe.set(f"{self.prefix}:b:{subject}", f"{baseline.rate:.4f} {baseline.minutes}", ex=ttl)
            pipe.execute()

    def claim(self, name: str, ttl_seconds: int) -> bool:
        return bool(self.client.set(f"{self.prefix}:claim:{name}", b"1", nx=True, ex=ttl_seconds))


class MemoryAbuseStore:
    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[int, dict[str, int]] = {}
        self._addresses: dict[tuple[str, int], set[str]] = {}
        self._baselines: dict[str, tuple[Baseline, float]] = {}  # subject -> (baseline, saved at)
        self._claims: dict[str, float] = {}  # name -> expires at (monotonic)

    def add(self, minute: int, counts: dict[str, int], addresses: dict[str, set[str]]) -> None:
        keep = settings.ABUSE_IP_LIMIT + 1
        with self._lock:
            self._prune(minute)
            minute_counts = self._counts.setdefault(minute, {})
            for subject, requests in counts.items():
                minute_counts[subject] = minute_counts.get(subject, 0) + requests
            for subject, hashes in addresses.items():
                seen = self._addresses.setdefault((subject, minute), set())
                for value in hashes:
                    if len(seen) >= keep:
                        break
                    seen.add(value)

    def minute_counts(self, minute: int) -> dict[str, int]:
        with self._lock:
            return dict(self._counts.get(minute, {}))

    def distinct_addresses(self, subjects: list[str], last_minute: int, minutes: int) -> dict[str, int]:
        with self._lock:
            found = {}
            for subject in subjects:
                union: set[str] = set()
                for m in range(last_minute - minutes + 1, last_minute + 1):
                    union |= self._addresses.get((subject, m), set())
                found[subject] = len(union)
            return found

    def baselines(self, subjects: list[str]) -> dict[str, Baseline]:
        with self._lock:
            return {subject: self._baselines[subject][0] for subject in subjects if subject in self._baselines}

    def baselines_save(self, baselines: dict[str, Baseline]) -> None:
        now = time.monotonic()
        with self._lock:
            for subject, baseline in baselines.items():
                self._baselines[subject] = (baseline, now)

    def claim(self, name: str, ttl_seconds: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._claims.get(name, 0.0) > now:
                return False
            self._claims[name] = now + ttl_seconds
            return True

    def _prune(self, minute: int) -> None:
        """Forget minutes outside every window, claims that expired and baselines idle past their days."""
        horizon = minute - max(settings.ABUSE_IP_WINDOW_MINUTES, COUNTS_TTL_SECONDS // 60)
        self._counts = {m: value for m, value in self._counts.items() if m >= horizon}
        self._addresses = {key: value for key, value in self._addresses.items() if key[1] >= horizon}
        now = time.monotonic()
        self._claims = {name: until for name, until in self._claims.items() if until > now}
        idle = now - settings.ABUSE_BASELINE_DAYS * 86400
        self._baselines = {subject: value for subject, value in self._baselines.items() if value[1] > idle}
