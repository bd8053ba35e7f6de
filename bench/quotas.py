"""What one rate-limit check costs, ours against django-ratelimit and DRF's throttles, and who overshoots.

Two runs in child processes, each on a fresh SQLite database under a temporary directory:
- `memory`: the embedded mode (our in-process store; the peers on Django's LocMemCache);
- `redis`: the distributed mode's store (our Lua script; the peers on Django's RedisCache),
  against the Redis at --redis (loopback by default).
Per run and per limiter:
- overhead: N sequential checks of one subject, each timed (perf_counter_ns); p50 / p99 in µs.
  Ours is the whole `quota_consume` service (policy lookup, keys, store, headers), not only the
  store call; the limit is set high enough that nothing is refused;
- overshoot: 200 threads released together against a limit of 50, the number each let through.

Usage: .venv/bin/python bench/quotas.py [--checks 20000] [--redis redis://127.0.0.1:6379/15]
Prints progress lines and the markdown rows of docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

THREADS, LIMIT = 200, 50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=20000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--child", choices=["memory", "redis"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.checks)), flush=True)
        return 0
    rows = []
    for mode in ("memory", "redis"):
        print(f"[{mode}] starting ({args.checks} checks per limiter)", flush=True)
        env = {**os.environ, "HOMEPOCKET_VAR_DIR": tempfile.mkdtemp(prefix=f"hp-bench-quotas-{mode}-"), "LOG_LEVEL": "WARNING"}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        if mode == "redis":
            env["REDIS_URL"] = args.redis
            env["CACHE_KEY_PREFIX"] = f"hp-bench-{uuid.uuid4().hex[:6]}"
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True)
        done = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--checks", str(args.checks)],
            cwd=REPO, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        for line in done.stderr.splitlines():
            if line.startswith("["):
                print(line, flush=True)
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    print("\n| mode | limiter | p50 µs | p99 µs | allowed of 200 at limit 50 |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['mode']} | {row['limiter']} | {row['p50_us']:.0f} | {row['p99_us']:.0f} | {row['allowed']} |")
    return 0


def child(mode: str, checks: int) -> list[dict]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "homepocket.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.test import RequestFactory

    settings.ALLOWED_HOSTS = ["*"]
    if mode == "redis":
        assert settings.RATELIMIT_REDIS_URL, "the redis run needs REDIS_URL"
    limiters = {"homepocket (ours)": ours(), "django-ratelimit 4.1": django_ratelimit(), "DRF SimpleRateThrottle": drf_throttle()}
    factory = RequestFactory()
    results = []
    for name, (make_check, limited) in limiters.items():
        check = make_check(10**9)
        request = factory.post("/bench", REMOTE_ADDR=f"10.1.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}")
        for _ in range(200):
            check(request)  # warm connections and caches
        timings = []
        for i in range(checks):
            started = time.perf_counter_ns()
            allowed = check(request)
            timings.append(time.perf_counter_ns() - started)
            assert allowed, f"{name} refused below its limit"
            if i and i % max(1, checks // 4) == 0:
                print(f"[{mode}] {name}: {i}/{checks} checks", file=sys.stderr, flush=True)
        timings.sort()
        allowed = overshoot(limited(LIMIT), factory)
        print(f"[{mode}] {name}: done, {allowed} of {THREADS} allowed at limit {LIMIT}", file=sys.stderr, flush=True)
        results.append({
            "mode": mode, "limiter": name, "allowed": allowed,
            "p50_us": statistics.median(timings) / 1000, "p99_us": timings[int(len(timings) * 0.99)] / 1000,
        })  # fmt: skip
    return results


def overshoot(check, factory) -> int:
    request = factory.post("/bench", REMOTE_ADDR="10.2.0.1")
    barrier = threading.Barrier(THREADS)
    allowed = []

    def attempt():
        barrier.wait()
        allowed.append(bool(check(request)))

    threads = [threading.Thread(target=attempt) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(allowed)


def ours():
    from apps.quotas.models import Policy
    from apps.quotas.policies import policies_forget
    from apps.quotas.services import QuotaSubjects, RateLimitExceeded, quota_consume

    def with_limit(limit: int):
        Policy.objects.filter(scope="pairing.verify").update(limit=limit)
        policies_forget()
        scope = f"bench-{uuid.uuid4().hex[:6]}"  # a fresh count: the subject is new each time
        subjects = QuotaSubjects(ip=scope)

        def check(request) -> bool:
            try:
                quota_consume(scopes=("pairing.verify",), subjects=subjects)
                return True
            except RateLimitExceeded:
                return False

        return check

    return with_limit, with_limit


def django_ratelimit():
    from django_ratelimit.core import is_ratelimited

    def with_limit(limit: int):
        group = f"bench-{uuid.uuid4().hex[:6]}"

        def check(request) -> bool:
            return not is_ratelimited(request, group=group, key="ip", rate=f"{limit}/h", increment=True)

        return check

    return with_limit, with_limit


def drf_throttle():
    from rest_framework.throttling import SimpleRateThrottle

    def with_limit(limit: int):
        scope = f"bench-{uuid.uuid4().hex[:6]}"

        class Throttle(SimpleRateThrottle):
            rate = f"{limit}/hour"

            def get_cache_key(self, request, view):
                return f"throttle_{scope}_{request.META['REMOTE_ADDR']}"

        def check(request) -> bool:
            # DRF makes a throttle per request, as here.
            return Throttle().allow_request(request, None)

        return check

    return with_limit, with_limit


if __name__ == "__main__":
    sys.exit(main())
