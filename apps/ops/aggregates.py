"""1-minute aggregates for the operator dashboard, kept 48 hours, written off the hot path.

A request adds a few in-memory increments to this process's tallies (homepocket/tally.py, from
the metrics middleware's request_observe); every OPS_FLUSH_SECONDS this process takes them, adds
the relay's frame counters (deltas of apps/relay/metrics.py), and adds the lot to the shared store
in one round trip:

- **distributed mode**: `HINCRBY` on the hashes `{prefix}:ops:m:<minute>` and
  `{prefix}:ops:h:<hour>` (Unix minute / hour numbers), in one pipeline, each with a TTL of
  OPS_RETENTION_HOURS. Every node adds to the same hashes, so a hash is the cluster's minute.
- **embedded mode**: `OpsCounter` rows (resolution, bucket start, name) upserted with
  `value = value + n`, and rows past the retention deleted.

Fields (aggregates only: endpoint groups, never ids): `<group>|n` requests, `<group>|4xx`,
`<group>|5xx`, `<group>|b<i>` the latency histogram (bucket i of homepocket.tally.LATENCY_BOUNDS, so
p50/p99 interpolate like Prometheus' `histogram_quantile`), `<group>|us` summed microseconds,
`relay|deliveries`, `relay|operations`. API keys' requests per day go to their owners' account
pages (apps/accounts/usage.py) in the same flush.

A store that is down keeps the tallies for the next flush; a process killed between flushes loses
at most OPS_FLUSH_SECONDS of its counts; a tally is filed under the minute it was flushed in.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

from django.conf import settings

from homepocket.redis_clients import sync_client
from homepocket.process_loops import ProcessLoop
from homepocket.tally import tallies_give_back, tallies_take

logger = logging.getLogger(__name__)

MINUTE, HOUR = "m", "h"
SECONDS = {MINUTE: 60, HOUR: 3600}

class RelayCounters:
    """This process's relay counters (apps/relay/metrics.py) as deltas since the previous read."""

    FIELDS = {"homepocket_relay_deliveries_total": "relay|deliveries", "homepocket_relay_operations_total": "relay|operations"}

    def __init__(self):
        self._last: dict[str, float] = {}

    def read(self) -> dict[str, int]:
        from apps.relay import metrics as relay_metrics

        fields = {}
        for metric in (relay_metrics.DELIVERIES, relay_metrics.OPERATIONS):
            for family in metric.collect():
                for sample in family.samples:
                    field = self.FIELDS.get(sample.name)
                    if field is not None:
                        delta = round(sample.value - self._last.get(field, 0.0))
                        self._last[field] = sample.value
                        if delta > 0:
                            fields[field] = delta
        return fields


# --- stores -------------------------------------------------------------------------------------


def _bucket(at: float, resolution: str) -> int:
    return int(at) // SECONDS[resolution]


class RedisAggregates:
    def __init__(self, client, prefix: str):
        self.client, self.prefix = client, prefix

    def _key(self, resolution: str, bucket: int) -> str:
        return f"{self.prefix}:ops:{resolution}:{bucket}"

    def add(self, fields: dict[str, int], at: float) -> None:
        ttl = settings.OPS_RETENTION_HOURS * 3600
        with self.client.pipeline(transaction=False) as pipe:
            for resolution in (MINUTE, HOUR):
                key = self._key(resolution, _bucket(at, resolution))
                for name, value in fields.items():
                    pipe.hincrby(key, name, value)
                pipe.expire(key, ttl)
            pipe.execute()

    def series(self, resolution: str, first: int, count: int) -> list[dict[str, int]]:
        with self.client.pipeline(transaction=False) as pipe:
            for bucket in range(first, first + count):
                pipe.hgetall(self._key(resolution, bucket))
            rows = pipe.execute()
        return [{k.decode(): int(v) for k, v in row.items()} for row in rows]


class DatabaseAggregates:
    _UPSERT = (
        "INSERT INTO ops_opscounter (resolution, at, name, value) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (resolution, at, name) DO UPDATE SET value = ops_opscounter.value + excluded.value"
    )
    PURGE_EVERY_SECONDS = 600.0

    def __init__(self):
        self._purged_at = float("-inf")

    def add(self, fields: dict[str, int], at: float) -> None:
        from django.db import connection, transaction

        from apps.ops.models import OpsCounter

        field = OpsCounter._meta.get_field("at")
        params = []
        for resolution in (MINUTE, HOUR):
            start = datetime.fromtimestamp(_bucket(at, resolution) * SECONDS[resolution], tz=timezone.utc)
            start = field.get_db_prep_value(start, connection)
            params += [(resolution, start, name, value) for name, value in fields.items()]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(self._UPSERT, params)
        if time.monotonic() - self._purged_at > self.PURGE_EVERY_SECONDS:
            self._purged_at = time.monotonic()
            cutoff = datetime.fromtimestamp(at, tz=timezone.utc) - timedelta(hours=settings.OPS_RETENTION_HOURS)
            OpsCounter.objects.filter(at__lt=cutoff).delete()

    def series(self, resolution: str, first: int, count: int) -> list[dict[str, int]]:
        from apps.ops.models import OpsCounter

        seconds = SECONDS[resolution]
        start = datetime.fromtimestamp(first * seconds, tz=timezone.utc)
        end = datetime.fromtimestamp((first + count) * seconds, tz=timezone.utc)
        rows: list[dict[str, int]] = [{} for _ in range(count)]
        found = OpsCounter.objects.filter(resolution=resolution, at__gte=start, at__lt=end).values_list("at", "name", "value")
        for at, name, value in found:
            rows[int(at.timestamp()) // seconds - first][name] = value
        return rows


def aggregates_store():
    if settings.REDIS_URL:
        return RedisAggregates(sync_client("ops_aggregates"), settings.CACHE_KEY_PREFIX)
    return DatabaseAggregates()


# --- this process's flusher ---------------------------------------------------------------------


class Flusher:
    def __init__(self, store=None):
        self.store = store
        self.relay = RelayCounters()
        self._lock = threading.Lock()

    def flush(self, at: float | None = None) -> dict[str, int]:
        """Add what this process counted since its last flush; returns the fields it added."""
        with self._lock:  # the periodic flush and the shutdown's last one never take the same tallies
            tallies, api_keys = tallies_take()
            tallies.update(self.relay.read())
            added = dict(tallies)
            try:
                if self.store is None:
                    self.store = aggregates_store()
                if tallies:
                    self.store.add(tallies, time.time() if at is None else at)
                    tallies = {}
                if api_keys:
                    from apps.accounts.usage import api_key_usage_add

                    api_key_usage_add(api_keys)
                    api_keys = {}
            finally:
                if tallies or api_keys:  # not stored: the next flush adds them
                    tallies_give_back(tallies, api_keys)
            return added

_loop = ProcessLoop("ops-aggregates")


def aggregates_start() -> None:
    """Start this process's flusher from its event loop (the ASGI lifespan startup); once per process."""
    # At a clean stop: the counts since the last flush are added, not lost.
    _loop.start_periodic(Flusher().flush, every=lambda: settings.OPS_FLUSH_SECONDS, what="ops aggregates")


def aggregates_stop() -> None:
    """End the flusher with its last flush (the lifespan's shutdown, homepocket/lifespan.py)."""
    _loop.stop()
