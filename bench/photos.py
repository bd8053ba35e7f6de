"""Photos: how fast are upload URLs issued, and how fast do bytes move through the embedded store?

Starts one real server process (the embedded mode: SQLite, the local objects directory and this
server's own signed /objects/ URLs; `python -m homepocket.server`, granian, one worker) in a
temporary directory, lifts the day quotas of photos.upload/photos.download for the run, and
measures with homepocket_client over loopback:

1. upload-URL issuance: `POST /api/v1/photos/upload` from T threads (each its own connection and
   device token per request, as the client library does), N requests: req/s and latency p50/p99;
2. transfer: K photos of each size PUT through their upload URLs, then GET through their download
   URLs, one stream at a time and S streams at once: MB/s (MB = 10^6 bytes) of the object
   requests alone (the upload/complete/get API calls are not timed).

Usage: .venv/bin/python bench/photos.py [--requests 2000] [--threads 8] [--photos 10] [--streams 4]
Prints progress lines and markdown rows for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

for name in ("DATABASE_URL", "REDIS_URL", "S3_BUCKET", "CELERY_BROKER_URL"):
    os.environ.pop(name, None)  # the embedded mode, whatever the calling shell has

from homepocket_client import DeviceIdentity, HomePocketClient  # noqa: E402
from tests.harness.live import LiveServer  # noqa: E402

MIB = 1024 * 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def issuance(url: str, phone: DeviceIdentity, requests: int, threads: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    digest = hashlib.sha256(b"x").hexdigest()

    def worker() -> None:
        with HomePocketClient(url, timeout=30) as client:
            local: list[float] = []
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                t0 = time.perf_counter()
                client.photo_upload_request(phone, transaction_id=f"tx-{i}", ciphertext_size=1000, sha256=digest)
                local.append(time.perf_counter() - t0)
                if i and i % 500 == 0:
                    print(f"  issued {i}/{requests}", flush=True)
            with lock:
                latencies.extend(local)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    return requests / (time.perf_counter() - started), latencies


def transfer(url: str, phone: DeviceIdentity, size: int, photos: int, streams: int) -> tuple[float, float]:
    """(upload MB/s, download MB/s) of `photos` objects of `size` bytes over `streams` parallel streams."""
    blob = os.urandom(size)
    digest = hashlib.sha256(blob).hexdigest()
    with HomePocketClient(url, timeout=120) as api:
        tickets = [api.photo_upload_request(phone, transaction_id=f"t{i}", ciphertext_size=size, sha256=digest) for i in range(photos)]

    # One client per stream, made before the clock starts: an httpx.Client costs ~20 ms to build
    # (its TLS context), which would otherwise be measured as transfer time.
    clients = [HomePocketClient(url, timeout=120) for _ in range(streams)]
    slots = threading.local()
    pool_ids = iter(range(streams))
    ids_lock = threading.Lock()

    def client_of_thread() -> HomePocketClient:
        if not hasattr(slots, "client"):
            with ids_lock:
                slots.client = clients[next(pool_ids)]
        return slots.client

    def put(ticket) -> None:
        client_of_thread().photo_object_put(ticket, blob)

    def get(download) -> None:
        assert len(client_of_thread().photo_object_get(download)) == size

    with ThreadPoolExecutor(streams) as pool:
        started = time.perf_counter()
        list(pool.map(put, tickets))
        upload_seconds = time.perf_counter() - started
        with HomePocketClient(url, timeout=120) as api:
            for ticket in tickets:
                api.photo_complete(phone, ticket.photo_id)
            downloads = [api.photo_get(phone, ticket.photo_id) for ticket in tickets]
        started = time.perf_counter()
        list(pool.map(get, downloads))
        download_seconds = time.perf_counter() - started
    for client in clients:
        client.close()
    total_mb = size * photos / 1e6
    return total_mb / upload_seconds, total_mb / download_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--streams", type=int, default=4)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hp-bench-photos-"))
    server = LiveServer(workdir, extra_env={"LOG_LEVEL": "WARNING"})
    print(f"embedded server under {workdir}", flush=True)
    server.start(setup=[
        ["quota", "set", "photos.upload", "--plan", "free", "--limit", "unlimited"],
        ["quota", "set", "photos.download", "--plan", "free", "--limit", "unlimited"],
    ])  # fmt: skip
    try:
        phone = DeviceIdentity.new("bench phone")
        with HomePocketClient(server.url) as api:
            api.create_book(phone)
            for _ in range(50):  # warm-up: connections, imports, SQLite pages
                api.photo_upload_request(phone, transaction_id="warm", ciphertext_size=10, sha256="0" * 64)
        print(f"issuance: {args.requests} requests from {args.threads} threads", flush=True)
        rate, latencies = issuance(server.url, phone, args.requests, args.threads)
        rows = [
            f"| upload-URL issuance, {args.threads} threads | {rate:,.0f} req/s | p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, mean {statistics.mean(latencies) * 1000:.1f} ms |"
        ]
        print(rows[-1], flush=True)
        for size in (MIB, 10 * MIB):
            for streams in (1, args.streams):
                print(f"transfer: {args.photos} x {size // MIB} MiB, {streams} stream(s)", flush=True)
                up, down = transfer(server.url, phone, size, args.photos, streams)
                rows.append(
                    f"| {size // MIB} MiB objects, {streams} stream(s) | upload {up:,.0f} MB/s | download {down:,.0f} MB/s |"
                )
                print(rows[-1], flush=True)
        print("\n| measurement | result | detail |\n|---|---|---|")
        print("\n".join(rows))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
