"""The dashboard's aggregates: deltas of this process's counters, folded into groups, summed in the mode's store."""

from __future__ import annotations

import secrets
import time

import pytest
import redis

from apps.ops import aggregates
from apps.ops.aggregates import Flusher
from apps.ops.selectors import last_day, last_hour, quantile
from apps.relay import metrics as relay_metrics
from homepocket import metrics, tally
from homepocket.tally import endpoint_group, tallies_take


@pytest.fixture
def store(settings, db):
    """The mode's store; in the distributed mode under a Redis prefix of this test's own."""
    if settings.REDIS_URL:
        settings.CACHE_KEY_PREFIX = f"{settings.CACHE_KEY_PREFIX}:ops-{secrets.token_hex(4)}"
        yield aggregates.aggregates_store()
        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(f"{settings.CACHE_KEY_PREFIX}:*"):
            client.delete(key)
    else:
        yield aggregates.aggregates_store()


@pytest.mark.parametrize(
    ("route", "group"),
    [
        ("/api/v1/pairing/verify", "pairing"),
        ("/api/v1/signing/sign", "signing"),
        ("/api/v1/books/<uuid:book_id>/photos", "photos"),
        ("/api/v1/books/<uuid:book_id>/devices/<uuid:device_id>", "books"),
        ("/api/v1/books", "books"),
        ("/health", "probes"),
        ("/admin/<path:object_id>/", "admin"),
        ("unmatched", "other"),
    ],
)
def test_a_route_template_falls_in_its_endpoint_group(route, group):
    assert endpoint_group(route) == group


class _Memory:
    def __init__(self):
        self.added = []

    def add(self, fields, at):
        self.added.append(fields)


@pytest.mark.django_db  # earlier tests may have tallied API-key requests: a flush writes their daily usage rows
def test_a_flush_adds_what_requests_tallied_by_group_and_relay_deltas():
    flusher = Flusher(store=_Memory())
    flusher.flush()  # what earlier tests counted goes first
    for _ in range(3):
        metrics.request_observe(method="POST", route="/api/v1/pairing/verify", status=200, seconds=0.003)
    metrics.request_observe(method="POST", route="/api/v1/pairing/verify", status=429, seconds=0.0005)
    metrics.request_observe(method="POST", route="/api/v1/pairing/generate", status=500, seconds=0.2)
    relay_metrics.DELIVERIES.inc(7)
    fields = flusher.flush()
    assert fields["pairing|n"] == 5
    assert fields["pairing|4xx"] == 1
    assert fields["pairing|5xx"] == 1
    assert fields["relay|deliveries"] == 7
    assert fields["pairing|b0"] == 1  # ≤ 1 ms: the 429
    assert fields["pairing|b2"] == 3  # ≤ 5 ms: the three 3 ms answers
    assert fields["pairing|b7"] == 1  # ≤ 250 ms: the 500
    assert fields["pairing|us"] == 3 * 3000 + 500 + 200_000
    assert flusher.flush() == {}  # nothing new: nothing to add
    assert flusher.store.added[-1] == fields


def test_flushes_of_several_processes_add_up_in_the_minute_and_the_hour(store):
    now = time.time()
    tallies_take()
    for _ in range(2):  # two processes, or one process twice
        for status in [200] * 9 + [503]:
            metrics.request_observe(method="POST", route="/api/v1/signing/sign", status=status, seconds=0.002)
        Flusher(store=store).flush(at=now)
    hour = last_hour(now=now, store=store)
    assert hour.rows[-1]["signing|n"] == 20
    assert hour.rows[-1]["signing|5xx"] == 2
    assert all(row == {} for row in hour.rows[:-1])
    day = last_day(now=now, store=store)
    assert day.rows[-1]["signing|n"] == 20
    signing = hour.per_group()["signing"]
    assert signing.error_rate == pytest.approx(0.1)
    assert 0.001 < signing.p(0.5) <= 0.0025


class _Down:
    def add(self, fields, at):
        raise ConnectionError("store down")


def test_counts_refused_by_a_down_store_are_added_at_the_next_flush(store):
    tallies_take()
    flusher = Flusher(store=_Down())
    metrics.request_observe(method="GET", route="/api/v1/usage", status=200, seconds=0.01)
    with pytest.raises(ConnectionError):
        flusher.flush()
    flusher.store = store
    assert flusher.flush()["usage|n"] == 1


def test_an_api_keys_requests_are_tallied_per_day():
    tallies_take()
    metrics.request_observe(method="GET", route="/api/v1/usage", status=200, seconds=0.01, api_key_id="k1")
    metrics.request_observe(method="GET", route="/api/v1/usage", status=200, seconds=0.01, api_key_id="k1")
    metrics.request_observe(method="GET", route="/api/v1/usage", status=200, seconds=0.01)
    _, api_keys = tallies_take()
    assert api_keys == {(int(time.time()) // 86400, "k1"): 2}
    assert tally._api_keys == {}


def test_quantiles_interpolate_inside_the_bucket_like_prometheus():
    bounds = (0.001, 0.01, 0.1)
    # 100 requests: 50 under 1 ms, 40 more under 10 ms, 10 more under 100 ms, none above.
    buckets = [50, 40, 10, 0]
    assert quantile(buckets, bounds, 0.5) == pytest.approx(0.001)
    assert quantile(buckets, bounds, 0.99) == pytest.approx(0.01 + 0.09 * 0.9)
    assert quantile([0, 0, 0, 0], bounds, 0.5) is None
    assert quantile([0, 0, 0, 5], bounds, 0.5) == 0.1  # all above the last bound
