"""What the dashboard's aggregates cost a request: the request path itself, and each flush amortized.

A request adds its tallies in memory from the metrics middleware's request_observe
(homepocket/tally.py); every OPS_FLUSH_SECONDS a flush adds them to the store
(apps/ops/aggregates.py). So this measures, in one process:

1. the tally alone (`request_tally`) and the whole `request_observe` (Prometheus + tally) per
   request, p50 / p99 in µs, with and without an API key (its requests per day are tallied too);
   `request_observe` without the tally is the Prometheus part: the difference is what was added;
2. one flush, p50 / p99 in ms, after `--per-flush` requests spread over every route template of the
   URLconf; against the embedded store (SQLite upsert) and, with --redis, the distributed one
   (one Redis pipeline);
3. the flush amortized per request at a few request rates: flush p50 / (rate × OPS_FLUSH_SECONDS).
   The flush runs in a thread but holds the GIL while it computes: counted as fully taken from
   requests.

Usage: nice -n -10 .venv/bin/python bench/ops.py [--redis redis://127.0.0.1:6379/15] [--flushes 200]
Prints progress lines and the markdown rows of docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _routes() -> list[str]:
    from django.urls import get_resolver

    found = []

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                found.append("/" + prefix + str(pattern.pattern))

    walk(get_resolver().url_patterns)
    return found


def run(mode: str, flushes: int, per_flush: int, observes: int) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from apps.ops.aggregates import Flusher, aggregates_store
    from homepocket import metrics, tally

    call_command("migrate", verbosity=0)
    routes = _routes()
    for route in routes:  # a node that served everything: every label set exists
        for status in (200, 404, 500):
            metrics.request_observe(method="GET", route=route, status=status, seconds=0.004)
    print(f"[{mode}] {len(routes)} route templates × 3 statuses in the registry", file=sys.stderr, flush=True)

    key = uuid.uuid4()
    timings = {}
    route = "/api/v1/signing/sign"

    def observe(**kwargs):
        metrics.request_observe(method="POST", route=route, status=200, seconds=0.001, **kwargs)

    cases = [
        ("request_tally (what the aggregates add)", lambda: tally.request_tally(route, 200, 0.001)),
        ("request_tally, API key", lambda: tally.request_tally(route, 200, 0.001, key)),
        ("request_observe (Prometheus + tally)", observe),
        ("request_observe, API key", lambda: observe(api_key_id=key)),
        # The abuse signals' per-subject count and address (apps/quotas/abuse.py), alone and as a
        # device's request adds it (a few hundred devices' worth of addresses, as a busy process sees).
        ("subject_tally (what the abuse signals add)", lambda: tally.subject_tally("device", key, "203.0.113.7")),
        ("request_observe, device (with the abuse tally)", lambda: observe(device_id=key, client_ip="203.0.113.7")),
    ]
    for label, call in cases:
        samples = []
        for _ in range(observes):
            started = time.perf_counter_ns()
            call()
            samples.append((time.perf_counter_ns() - started) / 1000)
        timings[label] = (statistics.median(samples), _pct(samples, 0.99))
        tally.tallies_take()
        tally.subjects_take()
    original = metrics.request_tally
    metrics.request_tally = lambda *args: None  # Prometheus alone, as before the aggregates
    samples = []
    for _ in range(observes):
        started = time.perf_counter_ns()
        observe()
        samples.append((time.perf_counter_ns() - started) / 1000)
    timings["request_observe without the tally (before)"] = (statistics.median(samples), _pct(samples, 0.99))
    metrics.request_tally = original

    flusher = Flusher(store=aggregates_store())
    flusher.flush()  # the first read counts everything since start: not a steady-state flush
    costs = []
    for i in range(flushes):
        for j in range(per_flush):
            route = routes[(i * per_flush + j) % len(routes)]
            metrics.request_observe(method="GET", route=route, status=200, seconds=0.002)
        started = time.perf_counter()
        flusher.flush()
        costs.append((time.perf_counter() - started) * 1000)
        if (i + 1) % 50 == 0:
            print(f"[{mode}] {i + 1}/{flushes} flushes", file=sys.stderr, flush=True)
    return {
        "mode": mode,
        "observe": timings,
        "flush_p50_ms": statistics.median(costs),
        "flush_p99_ms": _pct(costs, 0.99),
        "flush_seconds": settings.OPS_FLUSH_SECONDS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="", help="also measure the distributed store (a Redis URL)")
    parser.add_argument("--flushes", type=int, default=200)
    parser.add_argument("--per-flush", type=int, default=500)
    parser.add_argument("--observes", type=int, default=50000)
    parser.add_argument("--child", default="")
    args = parser.parse_args()
    if args.child:
        import json

        print(json.dumps(run(args.child, args.flushes, args.per_flush, args.observes)))
        return 0
    results = []
    modes = [("embedded", {})] + ([("distributed", {"REDIS_URL": args.redis})] if args.redis else [])
    for mode, extra in modes:
        with tempfile.TemporaryDirectory(prefix="hp-bench-ops-") as var:
            env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "S3_BUCKET")}
            env.update({"DJANGO_SETTINGS_MODULE": "homepocket.settings", "HOMEPOCKET_VAR_DIR": var, "LOG_LEVEL": "WARNING",
                        "CACHE_KEY_PREFIX": f"hp-bench-ops-{uuid.uuid4().hex[:6]}", **extra})  # fmt: skip
            done = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--flushes", str(args.flushes),
                 "--per-flush", str(args.per_flush), "--observes", str(args.observes)],
                env=env, cwd=REPO, check=True, capture_output=True, text=True,
            )  # fmt: skip
            sys.stderr.write(done.stderr)
            import json

            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("| mode | what | p50 | p99 |")
    print("|---|---|---|---|")
    for r in results:
        for label, (p50, p99) in r["observe"].items():
            print(f"| {r['mode']} | `{label}` per request | {p50:.2f} µs | {p99:.2f} µs |")
        print(f"| {r['mode']} | one flush ({args.per_flush} requests since the last) | {r['flush_p50_ms']:.2f} ms | {r['flush_p99_ms']:.2f} ms |")
    print()
    print("| mode | request rate | requests per flush | flush amortized per request (p50) |")
    print("|---|---|---|---|")
    for r in results:
        for rate in (10, 100, 1000):
            per = rate * r["flush_seconds"]
            print(f"| {r['mode']} | {rate}/s | {per:.0f} | {r['flush_p50_ms'] * 1000 / per:.2f} µs |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
