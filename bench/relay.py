"""How fast does the relay fan out, and how does it compare with the y-websocket server?

What it measures, with a Node load generator (bench/relay_load/load.mjs, `ws` client) that drives
every server the same way:
- deliveries per second at zero loss, and one-way p50/p99 latency, for books of 2, 5 and 20
  devices with 1,000 concurrent sockets: offered load rises step by step (--steps, deliveries/s
  due) until a step loses a frame, closes a socket or has p99 over --max-p99-ms; the last clean
  step is the figure;
- on these set-ups (--setups): `embedded` (one node, in-process hub), `redis1` (one node through
  Redis pub/sub), `redis2` (two nodes sharing a Redis, sockets alternating between them), and
  `yws` (the y-websocket server @y/websocket-server 0.1.1, one Node process, real Yjs updates);
  a `-uvicorn` suffix (`embedded-uvicorn`, `redis1-uvicorn`, `redis2-uvicorn`) runs the node(s)
  under uvicorn (ASGI_SERVER=uvicorn) instead of granian;
- memory per idle authenticated socket: --idle sockets (10,000) held open against one node
  (after `embedded` and `embedded-uvicorn`), the server's RSS before and after (all its
  processes); `idle` and `idle-uvicorn` measure only that.

Set-up: a temporary HOMEPOCKET_VAR_DIR (SQLite), a private redis-server on a free port for the
Redis set-ups, servers started with tests/harness/live.py (homepocket.server, one worker, LOG_LEVEL=WARNING,
BOOK_MAX_DEVICES=20); devices are registered through the API (create_book + pairing), tokens
minted here (1 h) and handed to the generator in a JSON file. The generator runs on the same
2-core machine as the servers, so figures compare servers on one machine; they are not a
capacity figure.

Usage: .venv/bin/python bench/relay.py [--setups embedded,embedded-uvicorn,redis1,redis1-uvicorn,redis2,yws,idle,idle-uvicorn] [--sizes 2,5,20]
           [--sockets 1000] [--step-seconds 5] [--idle 10000] [--json var/bench/relay.json]
Needs node and npm (the packages in bench/relay_load/package.json are installed there at bench
time, npm ci; node_modules is never committed). Figures go to docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from homepocket_client import HomePocketClient  # noqa: E402
from tests.e2e.relay_support import book_of  # noqa: E402
from tests.harness.live import LOAD_UNLIMITED, LiveServer  # noqa: E402
from tests.harness.ports import free_port, wait_for_port  # noqa: E402

LOAD_DIR = REPO / "bench" / "relay_load"
DEFAULT_STEPS = [2000, 5000, 10000, 15000, 20000, 25000, 30000, 35000, 40000, 50000, 60000, 70000, 80000]


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def npm_install() -> None:
    if not (LOAD_DIR / "node_modules" / "@y" / "websocket-server").exists():
        progress("installing the load generator's npm packages (bench/relay_load, npm ci)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=LOAD_DIR, check=True)


def rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants."""
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024
            todo += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            continue
    return total


class Redis:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def setup_parts(setup: str) -> tuple[str, str]:
    """`redis1-uvicorn` → ("redis1", "uvicorn"); no suffix → granian."""
    base, _, server = setup.partition("-")
    return base, server or "granian"


def start_nodes(workdir: Path, setup: str, redis: Redis | None) -> list[LiveServer]:
    # SQLite for every set-up (the relay is what is measured; run the bench without DATABASE_URL).
    base, server = setup_parts(setup)
    env = {"LOG_LEVEL": "WARNING", "BOOK_MAX_DEVICES": "20"}
    if redis is not None:
        env["REDIS_URL"] = redis.url
        env["CACHE_KEY_PREFIX"] = f"bench-{setup}"
    (workdir / "node1").mkdir(parents=True)
    first = LiveServer(workdir / "node1", extra_env=env, server=server).start(setup=LOAD_UNLIMITED)
    nodes = [first]
    if base == "redis2":
        (workdir / "node2").mkdir()
        second = LiveServer(workdir / "node2", extra_env={**env, **first.peer_env()}, server=server)
        nodes.append(second.start(migrate=False))
    return nodes


def register_books(url: str, sockets: int, size: int) -> list[list[dict]]:
    """sockets/size books of `size` devices, each device with a 1-hour token."""
    with HomePocketClient(url, timeout=30) as api:
        books = [book_of(api, size, "bench") for _ in range(sockets // size)]
    return [[{"book_id": str(m.book_id), "token": m.book_token(lifetime_seconds=3600)} for m in members] for members in books]


def run_generator(config: dict, workdir: Path, on_line=None) -> list[dict]:
    path = workdir / f"load-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(config))
    process = subprocess.Popen(["node", str(LOAD_DIR / "load.mjs"), str(path)], stdout=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:
        entry = json.loads(line)
        lines.append(entry)
        if on_line is not None:
            on_line(entry)
    process.wait()
    return lines


def best_clean_step(steps: list[dict], max_p99_ms: float) -> dict | None:
    clean = [s for s in steps if s["lost"] == 0 and s["closed"] == 0 and s["p99_ms"] is not None and s["p99_ms"] <= max_p99_ms]
    return max(clean, key=lambda s: s["deliveries_per_s"]) if clean else None


def measure_setup(setup: str, args, workdir: Path) -> dict:
    results: dict = {"setup": setup, "sizes": {}}
    if setup == "yws":
        port = free_port()
        server = subprocess.Popen(
            ["node", str(LOAD_DIR / "node_modules" / "@y" / "websocket-server" / "src" / "server.js")],
            env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port)},
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(port, process=server)
        try:
            for size in args.sizes:
                progress(f"yws: books of {size}, {args.sockets} sockets")
                books = [[{}] * size for _ in range(args.sockets // size)]
                config = {**generator_config(args), "mode": "yws", "urls": [f"ws://127.0.0.1:{port}"], "books": books}
                steps = run_generator(config, workdir)
                results["sizes"][size] = {"steps": steps, "best": best_clean_step(steps, args.max_p99_ms), "rss_bytes": rss_bytes(server.pid)}
        finally:
            server.terminate()
            server.wait(10)
        return results
    base, _ = setup_parts(setup)
    redis = Redis(workdir) if base in ("redis1", "redis2") else None
    nodes = start_nodes(workdir / setup, setup, redis)
    try:
        for size in args.sizes if base != "idle" else []:
            progress(f"{setup}: registering {args.sockets} devices in books of {size}")
            books = register_books(nodes[0].url, args.sockets, size)
            progress(f"{setup}: books of {size}, {args.sockets} sockets over {len(nodes)} node(s)")
            urls = [n.url.replace("http://", "ws://") for n in nodes]
            config = {**generator_config(args), "mode": "homepocket", "urls": urls, "books": books}
            steps = run_generator(config, workdir)
            results["sizes"][size] = {
                "steps": steps,
                "best": best_clean_step(steps, args.max_p99_ms),
                "rss_bytes": sum(rss_bytes(n.process.pid) for n in nodes),
            }
        if base in ("embedded", "idle") and args.idle:
            results["idle"] = measure_idle(nodes[0], args, workdir)
    finally:
        for index, node in enumerate(nodes, 1):
            (Path(args.json).parent / f"relay-{setup}-node{index}.log").write_text(node.log_text())
        for node in reversed(nodes):
            node.stop()
        if redis is not None:
            redis.stop()
    return results


def measure_idle(node: LiveServer, args, workdir: Path) -> dict:
    """RSS before and with --idle authenticated sockets (1,000 devices, each with idle/1000 sockets)."""
    progress(f"idle: registering 1,000 devices for {args.idle} idle sockets")
    books = register_books(node.url, 1000, 5)
    per_device = max(1, args.idle // 1000)
    sockets = [[member] * per_device for book in books for member in book]
    time.sleep(2)
    before = rss_bytes(node.process.pid)
    measured = {}

    def on_line(entry):
        if "opened" in entry:
            time.sleep(3)
            measured["with_sockets"] = rss_bytes(node.process.pid)
            measured["opened"] = entry["opened"]
            progress(f"idle: {entry['opened']} sockets open, server RSS {measured['with_sockets'] / 2**20:.0f} MiB")

    config = {**generator_config(args), "mode": "homepocket", "urls": [node.url.replace("http://", "ws://")], "books": sockets, "steps": [], "hold_seconds": 8}
    run_generator(config, workdir, on_line)
    per_socket = (measured["with_sockets"] - before) / measured["opened"]
    return {"sockets": measured["opened"], "rss_before_bytes": before, "rss_with_sockets_bytes": measured["with_sockets"], "bytes_per_socket": per_socket}


def generator_config(args) -> dict:
    return {"steps": args.steps, "step_seconds": args.step_seconds, "payload_bytes": args.payload_bytes, "max_p99_ms": args.max_p99_ms}


def markdown(all_results: list[dict], args) -> str:
    lines = [
        "| set-up | book size | deliveries/s at 0 loss | p50 ms | p99 ms | first failing step |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for result in all_results:
        for size, figures in result["sizes"].items():
            best = figures["best"]
            failing = next((s for s in figures["steps"] if s is not best and (s["lost"] or s["closed"] or (s["p99_ms"] or 0) > args.max_p99_ms)), None)
            fail_text = (
                f"offered {failing['offered']}/s: {failing['deliveries_per_s']}/s, lost {failing['lost']}, p99 {failing['p99_ms']:.1f} ms"
                if failing
                else "none (top step reached)"
            )
            if best is None:
                lines.append(f"| {result['setup']} | {size} | none clean | | | {fail_text} |")
            else:
                lines.append(
                    f"| {result['setup']} | {size} | {best['deliveries_per_s']:,} | {best['p50_ms']:.2f} | {best['p99_ms']:.2f} | {fail_text} |"
                )
    for result in all_results:
        if "idle" in result:
            idle = result["idle"]
            lines.append("")
            lines.append(
                f"Idle sockets ({result['setup']}): {idle['sockets']:,} open, server RSS {idle['rss_before_bytes'] / 2**20:.0f} MiB → "
                f"{idle['rss_with_sockets_bytes'] / 2**20:.0f} MiB, {idle['bytes_per_socket'] / 1024:.1f} KiB per socket."
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", default="yws,embedded,embedded-uvicorn,redis1,redis1-uvicorn,redis2")
    parser.add_argument("--sizes", default="2,5,20")
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--steps", default=",".join(map(str, DEFAULT_STEPS)))
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument("--payload-bytes", type=int, default=64)
    parser.add_argument("--max-p99-ms", type=float, default=50.0)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--json", default=str(REPO / "var" / "bench" / "relay.json"))
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.steps = [int(s) for s in args.steps.split(",")]
    # SIGTERM unwinds like Ctrl-C, so the servers and the private Redis are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the servers inherit it
    npm_install()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    all_results = []
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        for setup in args.setups.split(","):
            all_results.append(measure_setup(setup, args, Path(tmp)))
            print(markdown(all_results[-1:], args), flush=True)
    report = markdown(all_results, args)
    print("\n" + report)
    meta = {
        "machine": platform.platform(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": os.getloadavg(), "args": vars(args),
    }  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "results": all_results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
