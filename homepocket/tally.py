"""This process's running tallies for the operator dashboard, taken and emptied by each flush.

request_observe (homepocket/metrics.py) adds every answered request here: its endpoint group's
count, 4xx / 5xx, and one latency bucket (the Prometheus histogram's bounds). That is a few
dictionary increments under a lock (bench/ops.py); apps/ops/aggregates.py takes the tallies every
OPS_FLUSH_SECONDS and adds them to the shared store. Only aggregates are kept: endpoint groups,
never paths, ids or bodies. API keys' requests are tallied per key and day for their owners'
account pages (apps/accounts).

Requests made with an API key or a device token are also tallied per subject for the abuse
signals (apps/quotas/abuse.py): a count and the distinct client addresses since the last take,
at most SUBJECT_ADDRESSES_MAX of them (more can only mean "many", which that many already says).
The addresses stay in this process's memory until the next take, which hashes them.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left

# The bounds of homepocket_http_request_duration_seconds: bucket i counts latencies ≤ LATENCY_BOUNDS[i],
# bucket len(LATENCY_BOUNDS) the rest.
LATENCY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_API_GROUPS_UNDER_BOOK = {"devices": "books", "audit": "audit", "photos": "photos", "sync_status": "relay"}
_PLAIN_GROUPS = {"health": "probes", "ready": "probes", "metrics": "probes", "admin": "admin", "ops": "ops",
                 "account": "account", "api": "docs", "static": "static"}  # fmt: skip


def endpoint_group(route: str) -> str:
    """The dashboard's group of a route template: the API's first path part, or the site's area."""
    parts = route.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "api" and parts[1] == "v1":
        if parts[2] == "books" and len(parts) >= 5:
            return _API_GROUPS_UNDER_BOOK.get(parts[4], "books")
        return parts[2]
    return _PLAIN_GROUPS.get(parts[0], "other")


class _Fields:
    """The field names of one route, made once: no string building per request."""

    __slots__ = ("n", "e4", "e5", "us", "buckets")

    def __init__(self, route: str):
        group = endpoint_group(route)
        self.n, self.e4, self.e5, self.us = f"{group}|n", f"{group}|4xx", f"{group}|5xx", f"{group}|us"
        self.buckets = tuple(f"{group}|b{i}" for i in range(len(LATENCY_BOUNDS) + 1))


_fields_of: dict[str, _Fields] = {}
_lock = threading.Lock()
_tallies: dict[str, int] = {}
_api_keys: dict[tuple[int, str], int] = {}  # (Unix day, key id) -> requests
SUBJECT_ADDRESSES_MAX = 256
_subjects_lock = threading.Lock()
_subjects: dict[tuple[str, object], list] = {}  # (kind, id) -> [requests, {client addresses}]


def request_tally(route: str, status: int, seconds: float, api_key_id=None) -> None:
    fields = _fields_of.get(route)
    if fields is None:
        fields = _fields_of.setdefault(route, _Fields(route))
    bucket = fields.buckets[bisect_left(LATENCY_BOUNDS, seconds)]
    error = fields.e5 if status >= 500 else fields.e4 if status >= 400 else None
    with _lock:
        tallies = _tallies
        tallies[fields.n] = tallies.get(fields.n, 0) + 1
        tallies[bucket] = tallies.get(bucket, 0) + 1
        tallies[fields.us] = tallies.get(fields.us, 0) + int(seconds * 1_000_000)
        if error is not None:
            tallies[error] = tallies.get(error, 0) + 1
        if api_key_id is not None:
            slot = (int(time.time()) // 86400, str(api_key_id))
            _api_keys[slot] = _api_keys.get(slot, 0) + 1


def tallies_take() -> tuple[dict[str, int], dict[tuple[int, str], int]]:
    """Everything tallied since the last take (requests by field; API keys by day), and start afresh."""
    global _tallies, _api_keys
    with _lock:
        tallies, _tallies = _tallies, {}
        api_keys, _api_keys = _api_keys, {}
    return tallies, api_keys


def tallies_give_back(tallies: dict[str, int], api_keys: dict[tuple[int, str], int]) -> None:
    """A flush that could not store what it took returns it, to be added by the next one."""
    with _lock:
        for name, value in tallies.items():
            _tallies[name] = _tallies.get(name, 0) + value
        for slot, value in api_keys.items():
            _api_keys[slot] = _api_keys.get(slot, 0) + value


def subject_tally(kind: str, subject_id, address: str) -> None:
    """One request of an API key ("api_key") or a device ("device") from a client address."""
    slot = (kind, subject_id)
    with _subjects_lock:
        entry = _subjects.get(slot)
        if entry is None:
            entry = _subjects[slot] = [0, set()]
        entry[0] += 1
        addresses = entry[1]
        if address and len(addresses) < SUBJECT_ADDRESSES_MAX:
            addresses.add(address)


def subjects_take() -> dict[tuple[str, object], list]:
    """Every subject's [requests, addresses] since the last take, and start afresh."""
    global _subjects
    with _subjects_lock:
        subjects, _subjects = _subjects, {}
    return subjects
