"""Through nginx, one node against two: requests/s, relay deliveries/s, and reconnect time after a kill.

What it measures, all through Debian's nginx running deploy/nginx.conf (tests/harness/cluster.py),
on the distributed mode's PostgreSQL, Redis and moto S3:
- requests/s: h2load (HTTP/1.1, --h1) on an authenticated read, `GET /api/v1/books/{id}/devices`
  (token check, one PostgreSQL query), --connections connections for --seconds, for a cluster of
  one node and of two;
- relay deliveries/s: bench/relay.py's Node load generator, sockets opened through nginx (nginx
  spreads them, least_conn), books of --book-size; offered load rises step by step until a step
  loses a frame, closes a socket or has p99 over --max-p99-ms; the last clean step is the figure;
- reconnect after a node kill: in a two-node cluster under relay and HTTP load
  (tests/harness/node_kill.py, --kill-devices phones, 4 HTTP writers), node 2 gets SIGKILL, and
  in a fresh cluster SIGTERM (DRAIN_SECONDS=1); per socket that lost its node, the time from the
  client seeing the close to a pong on its new socket through nginx (reconnect), and from the
  signal to that pong (outage: it includes the drain). Acknowledged writes lost are counted too.

Each node runs one granian worker (LOG_LEVEL=WARNING); no Celery processes (they do not serve
requests). Load generators share the 2-core machine with everything else: compare the rows with
each other, not with a capacity figure.

Usage (the distributed mode's services are started by the harness):
    nice -n -10 .venv/bin/python -m tests.harness.distributed -- .venv/bin/python bench/cluster.py \
        [--nodes 1,2] [--seconds 10] [--connections 32] [--sockets 200] [--book-size 5] [--kill-rounds 2]
Figures go to docs/PERFORMANCE.md, section "Cluster".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.relay import best_clean_step, npm_install, register_books, run_generator  # noqa: E402
from homepocket_client import DeviceIdentity, HomePocketClient  # noqa: E402
from tests.harness.cluster import Cluster  # noqa: E402
from tests.harness.live import LOAD_UNLIMITED  # noqa: E402
from tests.harness.node_kill import kill_under_load, percentile, writes_missing  # noqa: E402

NODE_ENV = {"LOG_LEVEL": "WARNING", "BOOK_MAX_DEVICES": "50"}
DEFAULT_STEPS = [1000, 2000, 4000, 6000, 8000, 10000, 12000, 15000, 20000]


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def requests_per_second(cluster: Cluster, args) -> dict:
    phone = DeviceIdentity.new("bench reader")
    with HomePocketClient(cluster.url, timeout=30) as api:
        api.create_book(phone)
    url = f"{cluster.url}/api/v1/books/{phone.book_id}/devices"
    token = phone.book_token(lifetime_seconds=3600)
    argv = ["h2load", "--h1", "-c", str(args.connections), "-t", "1", "-D", str(args.seconds),
            "-H", f"Authorization: Bearer {token}", url]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out).groups()
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out).group(1)
    return {"req_per_s": rate, "2xx": int(statuses[0]), "5xx": int(statuses[3]), "4xx": int(statuses[2]), "mean": mean}


def relay_deliveries(cluster: Cluster, args, workdir: Path) -> dict:
    books = register_books(cluster.url, args.sockets, args.book_size)
    config = {
        "steps": args.steps, "step_seconds": args.step_seconds, "payload_bytes": 64, "max_p99_ms": args.max_p99_ms,
        "mode": "homepocket", "urls": [cluster.url.replace("http://", "ws://")], "books": books,
    }  # fmt: skip
    steps = run_generator(config, workdir)
    return {"steps": steps, "best": best_clean_step(steps, args.max_p99_ms)}


def measure_nodes(count: int, args, workdir: Path) -> dict:
    progress(f"{count} node(s): starting the cluster")
    cluster = Cluster(workdir / f"nodes{count}", nodes=count, extra_env=NODE_ENV, celery=False).start(setup=LOAD_UNLIMITED)
    try:
        progress(f"{count} node(s): h2load, {args.connections} connections, {args.seconds} s")
        http = requests_per_second(cluster, args)
        progress(f"{count} node(s): {http}")
        progress(f"{count} node(s): relay, {args.sockets} sockets in books of {args.book_size}")
        relay = relay_deliveries(cluster, args, workdir)
        progress(f"{count} node(s): relay best {relay['best']}")
        return {"nodes": count, "http": http, "relay": relay}
    finally:
        cluster.stop()


def measure_kill(sig: int, round_number: int, args, workdir: Path) -> dict:
    name = signal.Signals(sig).name
    progress(f"kill {name} round {round_number}: starting a two-node cluster")
    cluster = Cluster(workdir / f"kill-{name}-{round_number}", extra_env={**NODE_ENV, "DRAIN_SECONDS": "1", "GRACEFUL_TIMEOUT_SECONDS": "5"},
                      celery=False).start(setup=LOAD_UNLIMITED)  # fmt: skip
    try:
        outcome = asyncio.run(kill_under_load(cluster, node=1, sig=sig, devices=args.kill_devices, before=3.0, after=5.0))
        missing = writes_missing(cluster, outcome.writes_acknowledged)
        result = {
            "signal": name, "sockets_lost": outcome.sockets_lost, "sockets_back": outcome.sockets_back,
            "reconnect_seconds": outcome.reconnect_seconds, "outage_seconds": outcome.outage_seconds,
            "writes_acknowledged": len(outcome.writes_acknowledged), "writes_failed": outcome.writes_failed,
            "writes_lost": len(missing), "nginx_ready_not_200": sum(1 for s in outcome.nginx_ready if s != 200),
        }  # fmt: skip
        progress(f"kill {name} round {round_number}: lost {result['sockets_lost']} sockets, back {result['sockets_back']}, "
                 f"p99 reconnect {percentile(outcome.reconnect_seconds, 0.99)}")  # fmt: skip
        return result
    finally:
        cluster.stop()


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f}"


def markdown(node_results: list[dict], kills: list[dict]) -> str:
    lines = [
        "| nodes | requests/s (GET devices) | 5xx | relay deliveries/s at 0 loss | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in node_results:
        best = r["relay"]["best"]
        relay = f"{best['deliveries_per_s']:,} | {best['p50_ms']:.1f} | {best['p99_ms']:.1f}" if best else "none clean | | "
        lines.append(f"| {r['nodes']} | {r['http']['req_per_s']:,.0f} | {r['http']['5xx']} | {relay} |")
    if kills:
        lines += ["", "| kill | sockets lost / back | reconnect p50 / p99 / max ms | outage p50 / p99 ms | writes acked / failed / lost |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for sig in sorted({k["signal"] for k in kills}):
            rounds = [k for k in kills if k["signal"] == sig]
            reconnect = [s for k in rounds for s in k["reconnect_seconds"]]
            outage = [s for k in rounds for s in k["outage_seconds"]]
            lines.append(
                f"| {sig} ×{len(rounds)} | {sum(k['sockets_lost'] for k in rounds)} / {sum(k['sockets_back'] for k in rounds)} "
                f"| {ms(percentile(reconnect, 0.5))} / {ms(percentile(reconnect, 0.99))} / {ms(max(reconnect, default=None))} "
                f"| {ms(percentile(outage, 0.5))} / {ms(percentile(outage, 0.99))} "
                f"| {sum(k['writes_acknowledged'] for k in rounds)} / {sum(k['writes_failed'] for k in rounds)} / {sum(k['writes_lost'] for k in rounds)} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,2")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--book-size", type=int, default=5)
    parser.add_argument("--steps", default=",".join(map(str, DEFAULT_STEPS)))
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument("--max-p99-ms", type=float, default=50.0)
    parser.add_argument("--kill-rounds", type=int, default=2)
    parser.add_argument("--kill-devices", type=int, default=40)
    parser.add_argument("--kill-signals", default="SIGKILL,SIGTERM")
    parser.add_argument("--json", default=str(REPO / "var" / "bench" / "cluster.json"))
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        parser.error("run it under tests.harness.distributed (see the usage above)")
    args.steps = [int(s) for s in args.steps.split(",")]
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))  # unwind: clusters are stopped
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # nginx and the nodes inherit it
    npm_install()
    node_results, kills = [], []
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        for count in [int(n) for n in args.nodes.split(",") if n]:
            node_results.append(measure_nodes(count, args, Path(tmp)))
        for round_number in range(1, args.kill_rounds + 1):
            for sig in [signal.Signals[name] for name in args.kill_signals.split(",") if name]:
                kills.append(measure_kill(sig, round_number, args, Path(tmp)))
    report = markdown(node_results, kills)
    print("\n" + report)
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load": os.getloadavg(), "args": vars(args)}  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "nodes": node_results, "kills": kills}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
