"""How fast is POST /api/v1/signing/sign? Open-loop latency, saturation, and the signer alone.

Four measurements, one run (docs/PERFORMANCE.md, "Signing"):

1. **Signer alone**: raw coincurve signs/s in this process (one core) vs signs/s through one
   signer process's socket with apps/signing/client.py (pipelined, --signer-in-flight requests in
   flight), and the one-at-a-time round trip.
2. **Open loop** (the latency figures): --connections HTTP/1.1 keep-alive connections, each sending
   at Poisson-spaced times (exponential gaps, rate/connections per connection), latency counted from
   the *scheduled* send time, so a slow answer delays the next scheduled request's clock, not the
   schedule (no coordinated omission). A small asyncio + uvloop generator: --duration s per rate.
3. **Saturation** with h2load (Debian's nghttp2-client, `--h1`, --connections connections) on the
   sign route, and on a bare ASGI hello world (bench/hello_asgi.py) served the same way (granian,
   same workers), reported as a ratio.

Set-up: a LiveServer (tests/harness/live.py) in the mode the environment gives (DATABASE_URL +
REDIS_URL for --workers > 1), --signers signer processes, an API key with the signing scope, one
signing key. The generator and h2load run on the same machine as the server and share its cores.

Usage: .venv/bin/python bench/sign.py [--rates 2000,4000] [--duration 60] [--connections 500]
           [--workers 2] [--signers 2] [--json var/bench/sign.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import uvloop  # noqa: E402
from coincurve import PrivateKey  # noqa: E402

from homepocket_client import HomePocketClient, SigningClient  # noqa: E402
from tests.harness.live import LiveServer  # noqa: E402
from tests.harness.ports import free_port, wait_for_port  # noqa: E402
from tests.harness.signers import SignerProcesses, signer_environment  # noqa: E402


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- 1. the signer alone -------------------------------------------------------------------------


def raw_coincurve_rate(seconds: float = 3.0) -> float:
    key = PrivateKey()
    digest = os.urandom(32)
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            key.sign_recoverable(digest, hasher=None)
        count += 1000
    return count / seconds


async def _signer_socket(paths: list[str], in_flight: int, seconds: float) -> dict:
    from apps.signing.client import SignerClient

    client = SignerClient(paths, pool_size=2, timeout=5)
    key_id = uuid.uuid4()
    created = await client.create(key_id)
    digest = os.urandom(32)
    await client.sign(key_id, digest, created.material)
    # One at a time: the round trip.
    samples = []
    for _ in range(2000):
        t = time.perf_counter()
        await client.sign(key_id, digest, created.material)
        samples.append(time.perf_counter() - t)
    samples.sort()
    # Pipelined: `in_flight` workers, each one request at a time, over the pooled connections.
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal count
        while time.perf_counter() < deadline:
            await client.sign(key_id, digest, created.material)
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    client.close()
    return {
        "round_trip_p50_us": samples[len(samples) // 2] * 1e6,
        "round_trip_p99_us": samples[int(len(samples) * 0.99)] * 1e6,
        "pipelined_signs_per_s": count / elapsed,
    }


def signer_alone(args, workdir: Path) -> dict:
    progress("signer alone: raw coincurve")
    raw = raw_coincurve_rate()
    workdir.mkdir(parents=True, exist_ok=True)
    env = signer_environment({**os.environ, "HOMEPOCKET_VAR_DIR": str(workdir / "var")}, workdir / "master-key.json")
    signers = SignerProcesses(1, env, workdir).start()
    try:
        progress("signer alone: through the socket")
        result = uvloop.run(_signer_socket(signers.paths, args.signer_in_flight, 5.0))
    finally:
        signers.stop()
    return {"raw_coincurve_signs_per_s": raw, **result}


# -- 2. the open-loop generator ------------------------------------------------------------------


class OpenLoop:
    def __init__(self, host: str, port: int, bodies: list[bytes], api_key: str):
        self.host, self.port = host, port
        self.requests = [
            (
                b"POST /api/v1/signing/sign HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Authorization: Api-Key " + api_key.encode() + b"\r\nContent-Length: " + str(len(b)).encode() + b"\r\n\r\n" + b
            )
            for b in bodies
        ]
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.failures = 0
        self.sent = 0

    async def connection(self, rate: float, start: float, end: float) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        loop = asyncio.get_running_loop()
        scheduled = start + random.expovariate(rate)
        try:
            while scheduled < end:
                delay = scheduled - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(random.choice(self.requests))
                self.sent += 1
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                await reader.readexactly(length)
                self.latencies.append(loop.time() - scheduled)  # from the schedule, not the send
                self.statuses[status] = self.statuses.get(status, 0) + 1
                scheduled += random.expovariate(rate)
        except (OSError, asyncio.IncompleteReadError, ValueError, AttributeError):
            self.failures += 1
        finally:
            writer.close()

    async def run(self, total_rate: float, connections: int, seconds: float) -> dict:
        loop = asyncio.get_running_loop()
        start = loop.time() + 1.0  # every connection opened before the first scheduled send
        end = start + seconds
        tasks = [asyncio.create_task(self.connection(total_rate / connections, start, end)) for _ in range(connections)]

        async def report():
            seen = 0
            while True:
                await asyncio.sleep(10)
                window = sorted(self.latencies[seen:])
                seen += len(window)
                p99 = f"{window[int(len(window) * 0.99)] * 1000:.2f} ms" if window else "-"
                errors = sum(c for s, c in self.statuses.items() if s != 200) + self.failures
                progress(f"  {loop.time() - start:5.0f}s: {seen} answered, last 10 s p99 {p99}, errors so far {errors}")

        reporter = asyncio.create_task(report())
        await asyncio.gather(*tasks)
        reporter.cancel()
        lat = sorted(self.latencies)
        answered = len(lat)
        errors = sum(c for s, c in self.statuses.items() if s != 200) + self.failures

        def q(f):
            return round(lat[min(answered - 1, int(answered * f))] * 1000, 2) if answered else None

        return {
            "offered_per_s": total_rate, "connections": connections, "seconds": seconds,
            "answered": answered, "achieved_per_s": round(answered / seconds, 1),
            "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99), "p999_ms": q(0.999), "max_ms": q(1.0),
            "errors": errors, "error_rate": round(errors / max(1, self.sent), 5), "statuses": self.statuses,
        }  # fmt: skip


def open_loop(port: int, api_key: str, key_id: str, rate: float, args) -> dict:
    bodies = [json.dumps({"key_id": key_id, "digest": os.urandom(32).hex()}).encode() for _ in range(1000)]
    generator = OpenLoop("127.0.0.1", port, bodies, api_key)
    return uvloop.run(generator.run(rate, args.connections, args.duration))


# -- 3. saturation with h2load ---------------------------------------------------------------


def h2load(url: str, args, *, data: Path | None = None, headers: list[str] = ()) -> dict:
    argv = ["h2load", "--h1", "-c", str(args.connections), "-t", "1", "-D", str(args.saturation_seconds),
            "--warm-up-time", "2"]  # fmt: skip
    if data is not None:
        argv += ["-d", str(data)]
    for header in headers:
        argv += ["-H", header]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=args.saturation_seconds + 120).stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    return {
        "req_per_s": float(rps.group(1)) if rps else None,
        "2xx": int(status.group(1)) if status else None,
        "5xx": int(status.group(4)) if status else None,
        "command": re.sub(r"Api-Key \S+", "Api-Key <key>", " ".join(argv + [url])),
    }


def hello_world(args, workdir: Path) -> dict:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(args.workers), "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
         "--backlog", "1024", "bench.hello_asgi:app"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, process=process)
        return h2load(f"http://127.0.0.1:{port}/", args)
    finally:
        process.terminate()
        process.wait(20)


# -- the run ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="2000,4000")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--signers", type=int, default=2)
    parser.add_argument("--saturation-seconds", type=int, default=20)
    parser.add_argument("--signer-in-flight", type=int, default=256)
    parser.add_argument("--skip", default="", help="comma list of: signer,open,saturation,hello")
    parser.add_argument("--json", default=str(REPO / "var" / "bench" / "sign.json"))
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if args.workers > 1 and not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        parser.error("--workers > 1 needs the distributed mode: set DATABASE_URL and REDIS_URL")
    if "saturation" not in skip and not shutil.which("h2load"):
        parser.error("h2load is missing: apt-get install nghttp2-client")
    workdir = Path(tempfile.mkdtemp(prefix="bench-sign-"))
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
                     "args": vars(args), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    if "signer" not in skip:
        results["signer_alone"] = signer_alone(args, workdir / "alone")
        progress(f"signer alone: {json.dumps(results['signer_alone'])}")
    env = {"LOG_LEVEL": "WARNING", "CACHE_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:6]}", "LISTEN_BACKLOG": "4096"}
    server = LiveServer(workdir / "server", extra_env=env, workers=args.workers, signers=args.signers)
    progress(f"starting the server: {args.workers} granian workers, {args.signers} signers")
    server.start()
    try:
        with HomePocketClient(server.url, timeout=10) as http:
            out = subprocess.run(
                [sys.executable, "manage.py", "apikey", "create", "--name", "bench", "--scope", "signing"],
                cwd=REPO, env=server.env, check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            api_key = out.strip().splitlines()[-1]
            signing = SigningClient(http, api_key=api_key)
            key = signing.create_key()
            signing.sign(key.key_id, os.urandom(32))
        if "open" not in skip:
            results["open_loop"] = []
            for rate in [float(r) for r in args.rates.split(",")]:
                progress(f"open loop at {rate:.0f} req/s over {args.connections} connections for {args.duration:.0f}s")
                result = open_loop(server.port, api_key, str(key.key_id), rate, args)
                progress(f"  {json.dumps(result)}")
                results["open_loop"].append(result)
        if "saturation" not in skip:
            body = workdir / "sign.json"
            body.write_text(json.dumps({"key_id": str(key.key_id), "digest": os.urandom(32).hex()}))
            progress(f"saturation: h2load on the sign route, {args.saturation_seconds}s")
            results["saturation_sign"] = h2load(
                f"{server.url}/api/v1/signing/sign", args, data=body,
                headers=[f"Authorization: Api-Key {api_key}", "Content-Type: application/json"],
            )  # fmt: skip
            progress(f"  {json.dumps(results['saturation_sign'])}")
    finally:
        server.stop()
    if "saturation" not in skip and "hello" not in skip:
        progress("saturation: h2load on the bare ASGI hello world")
        results["saturation_hello"] = hello_world(args, workdir)
        progress(f"  {json.dumps(results['saturation_hello'])}")
        sign, hello = results["saturation_sign"]["req_per_s"], results["saturation_hello"]["req_per_s"]
        if sign and hello:
            results["sign_to_hello_ratio"] = round(sign / hello, 3)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
