"""How fast is share delivery? ECIES encrypt/decrypt, and POST /api/v1/backup/delivery/request under load.

1. **ECIES** in this process: µs per encrypt and per decrypt of a --share-bytes share (median and
   p99 of --ecies-iterations single operations, each timed alone).
2. **Request endpoint**: a LiveServer (tests/harness/live.py) in the mode the environment gives
   (embedded SQLite, or PostgreSQL when DATABASE_URL is set), one book with two devices, one
   deposited share; then --connections HTTP/1.1 keep-alive connections each send requests back to
   back (closed loop) for --duration seconds. Every request is a new one (its own nonce), so each
   does the full work: unwrap, ECIES, sign, record the nonce and its answer. Latency is counted
   from the send to the last byte of the answer. The generator (asyncio + uvloop, one process)
   runs on the same machine and shares its cores.

   The server runs each route given by --routes: `lean` (DELIVERY_LEAN_ROUTE=1, the ASGI route
   before Django, apps/backups/delivery/fast_route.py) and `django` (DELIVERY_LEAN_ROUTE=0).
   With --rate R the load is an open loop instead: each connection sends on a fixed schedule
   (R/connections requests/s), latency counted from the scheduled send time, as wrk2 does, so
   a server that falls behind shows it in the latency, not in a lower request rate.
   The device's `backup.request` quota (120 per 10 minutes by default) is raised to 10^9, so
   requests are still counted against it (leased blocks) but none is refused.

Run it with `nice -n -10` (the server, its signer and the generator inherit the priority); the
load average before and after is in the report.

Usage: .venv/bin/python bench/delivery.py [--connections 100] [--duration 20] [--workers 1] [--rate 1000]
           [--routes lean,django] [--share-bytes 4096] [--json var/bench/delivery.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import uvloop  # noqa: E402
from coincurve import PrivateKey  # noqa: E402

from homepocket_client import DeviceIdentity, HomePocketClient  # noqa: E402
from homepocket_client.delivery import ShareDeliveryClient  # noqa: E402
from homepocket_client.ecies import ecies_decrypt, ecies_encrypt  # noqa: E402
from tests.harness.live import LiveServer  # noqa: E402


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _quantiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"median_us": round(statistics.median(ordered) * 1e6, 1), "p99_us": round(ordered[int(len(ordered) * 0.99)] * 1e6, 1)}


def ecies_speed(share_bytes: int, iterations: int) -> dict:
    recipient = PrivateKey()
    public = recipient.public_key.format()
    share, aad = os.urandom(share_bytes), uuid.uuid4().bytes
    encrypt, decrypt = [], []
    for i in range(iterations):
        started = time.perf_counter()
        message = ecies_encrypt(public, share, aad=aad)
        encrypt.append(time.perf_counter() - started)
        started = time.perf_counter()
        ecies_decrypt(recipient, message, aad=aad)
        decrypt.append(time.perf_counter() - started)
        if i and i % 5000 == 0:
            progress(f"  ECIES {i}/{iterations}")
    return {"share_bytes": share_bytes, "iterations": iterations, "encrypt": _quantiles(encrypt), "decrypt": _quantiles(decrypt)}


class LoadGenerator:
    def __init__(self, port: int, token: str, backup_id: uuid.UUID):
        self.port = port
        self.head = (b"POST /api/v1/backup/delivery/request HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\n")  # fmt: skip
        self.key = PrivateKey().public_key.format().hex()
        self.backup_id = str(backup_id)
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.failures = 0
        self.counter = 0

    def request(self) -> bytes:
        self.counter += 1
        body = json.dumps({"backup_id": self.backup_id, "client_public_key": self.key, "timestamp": int(time.time()),
                           "nonce": f"bench-{os.getpid()}-{self.counter:012d}"}).encode()  # fmt: skip
        return self.head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body

    async def connection(self, end: float, interval: float | None = None, offset: float = 0.0) -> None:
        """Closed loop (interval None): the next request as soon as the answer is in. Open loop: one
        request every `interval` s on a fixed schedule; latency counts from the scheduled time, so a
        request that waited for the connection (the previous answer was late) counts that wait too
        (no coordinated omission)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        loop = asyncio.get_running_loop()
        scheduled = loop.time() + offset
        try:
            while loop.time() < end:
                if interval is not None:
                    if scheduled > loop.time():
                        await asyncio.sleep(scheduled - loop.time())
                    if scheduled >= end:
                        break
                    started, scheduled = scheduled, scheduled + interval
                else:
                    started = loop.time()
                writer.write(self.request())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                await reader.readexactly(length)
                self.latencies.append(loop.time() - started)
                self.statuses[status] = self.statuses.get(status, 0) + 1
        except (OSError, asyncio.IncompleteReadError, ValueError, AttributeError):
            self.failures += 1
        finally:
            writer.close()

    async def run(self, connections: int, seconds: float, rate: float | None = None) -> dict:
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + seconds
        interval = connections / rate if rate else None

        async def report():
            while True:
                await asyncio.sleep(5)
                progress(f"  {loop.time() - start:5.0f}s: {len(self.latencies)} answered")

        reporter = asyncio.create_task(report())
        await asyncio.gather(*(self.connection(end, interval, (interval or 0) * i / connections) for i in range(connections)))
        reporter.cancel()
        elapsed = loop.time() - start
        lat = sorted(self.latencies)
        answered = len(lat)

        def q(f):
            return round(lat[min(answered - 1, int(answered * f))] * 1000, 2) if answered else None

        errors = sum(c for s, c in self.statuses.items() if s != 200) + self.failures
        return {"connections": connections, "offered_per_s": rate, "seconds": round(elapsed, 1), "answered": answered,
                "per_s": round(answered / elapsed, 1), "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99),
                "max_ms": q(1.0), "errors": errors, "statuses": self.statuses}  # fmt: skip


QUOTA_FOR_LOAD = ["quota", "set", "backup.request", "--plan", "free", "--limit", str(10**9)]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def request_load(args, workdir: Path, route: str) -> dict:
    env = {"LOG_LEVEL": "WARNING", "DELIVERY_LEAN_ROUTE": "1" if route == "lean" else "0"}
    server = LiveServer(workdir, workers=args.workers, extra_env=env).start(setup=[QUOTA_FOR_LOAD])
    try:
        alice, bob = DeviceIdentity.new("bench alice"), DeviceIdentity.new("bench bob")
        backup_id = uuid.uuid4()
        with HomePocketClient(server.url, timeout=30) as http:
            http.create_book(alice)
            http.pairing_verify(bob, http.pairing_generate(alice).short_code)
            delivery = ShareDeliveryClient(http)
            delivery.deposit(alice, backup_id=backup_id, recipient_device_id=bob.device_id, share=os.urandom(args.share_bytes))
            delivery.request(bob, backup_id=backup_id)  # warm: the server key is made and opened
        progress(f"request endpoint ({route} route): {args.connections} connections for {args.duration}s against {server.url}")
        token = bob.book_token(lifetime_seconds=3600)
        before = load_average()
        result = uvloop.run(LoadGenerator(server.port, token, backup_id).run(args.connections, args.duration, args.rate))
        result["load_average_before"], result["load_average_after"] = before, load_average()
        result["mode"] = "distributed (PostgreSQL)" if os.environ.get("DATABASE_URL") else "embedded (SQLite)"
        result["route"], result["workers"] = route, args.workers
        return result
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rate", type=float, help="open loop: offer this many requests/s in all (on a fixed schedule) instead of a closed loop")
    parser.add_argument("--routes", default="lean,django", help="comma-separated: lean, django")
    parser.add_argument("--share-bytes", type=int, default=4096)
    parser.add_argument("--ecies-iterations", type=int, default=20000, help="0: skip the ECIES measurement")
    parser.add_argument("--skip-load", action="store_true", help="ECIES only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    if args.ecies_iterations:
        progress(f"ECIES: {args.ecies_iterations} encrypts and decrypts of {args.share_bytes} bytes")
        report["ecies"] = ecies_speed(args.share_bytes, args.ecies_iterations)
        progress(f"ECIES: {report['ecies']}")
    if not args.skip_load:
        report["request"] = []
        for route in args.routes.split(","):
            with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
                report["request"].append(request_load(args, Path(tmp), route))
            progress(f"request ({route}): {report['request'][-1]}")
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
