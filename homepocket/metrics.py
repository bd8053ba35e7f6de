"""Prometheus metrics: requests by route template and status, and a latency histogram.

With several worker processes, the launcher sets PROMETHEUS_MULTIPROC_DIR before any worker
starts; prometheus_client then keeps each process's values in memory-mapped files there and
/metrics sums them, so a scrape that lands on any worker sees the whole node.
"""

from __future__ import annotations

import os

from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

from homepocket.tally import LATENCY_BOUNDS, request_tally, subject_tally

REQUESTS = Counter(
    "homepocket_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "homepocket_http_request_duration_seconds",
    "Time from the first middleware to the response, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BOUNDS,
)


def request_observe(
    *, method: str, route: str, status: int, seconds: float, api_key_id=None, device_id=None, client_ip: str = ""
) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)
    request_tally(route, status, seconds, api_key_id)  # the operator dashboard's aggregates (apps/ops)
    # The abuse signals' per-subject counts and addresses (apps/quotas/abuse.py)
    if api_key_id is not None:
        subject_tally("api_key", api_key_id, client_ip)
    elif device_id is not None:
        subject_tally("device", device_id, client_ip)


def metrics_view(request):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
