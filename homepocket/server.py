"""Run the ASGI app under granian, with a drain period on SIGTERM and N worker processes.

granian was chosen by measurement over uvicorn and daphne (docs/PERFORMANCE.md). This entry
point wraps it for what a deployment needs beyond the server itself:
- SIGTERM first makes /health answer 503 for DRAIN_SECONDS while requests are still served (a
  file under var/run/ tells every worker process), so a load balancer stops sending traffic
  before the listener closes; then granian stops gracefully. SIGINT (Ctrl-C) stops at once.
- every worker writes its metrics to one PROMETHEUS_MULTIPROC_DIR, so /metrics answered by any
  worker reports the whole node;
- granian runs with PR_SET_PDEATHSIG, so it never outlives this process.

Usage: python -m homepocket.server --host 127.0.0.1 --port 8000 --workers 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from homepocket.env import env_float, env_int, env_str
from homepocket.process_guard import die_with_parent

BASE_DIR = Path(__file__).resolve().parent.parent


def _var_dir() -> Path:
    return Path(env_str("HOMEPOCKET_VAR_DIR") or BASE_DIR / "var").resolve()


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)  # values of a previous run would be summed into this one's
    path.mkdir(parents=True, exist_ok=True)
    return path


def granian_command(host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "granian",
        "--interface", "asgi",
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
        "--loop", "uvloop",
        "--working-dir", str(BASE_DIR),
        "--no-access-log",  # homepocket.middleware writes the access log, with route templates
        "--log-level", env_str("SERVER_LOG_LEVEL", "warning"),
        "--respawn-failed-workers",
        "--workers-kill-timeout", str(int(env_float("GRACEFUL_TIMEOUT_SECONDS", 20.0))),
        "--backlog", str(env_int("LISTEN_BACKLOG", 1024)),
        "homepocket.asgi:application",
    ]  # fmt: skip


def serve(host: str, port: int, workers: int) -> int:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "homepocket.settings")
    env.setdefault("NODE_ID", f"{socket.gethostname()}:{port}")  # the cluster page's name for this node
    metrics_dir = env.get("PROMETHEUS_MULTIPROC_DIR") or str(_var_dir() / "prometheus" / str(port))
    env["PROMETHEUS_MULTIPROC_DIR"] = str(_fresh_dir(Path(metrics_dir)))
    drain_file = _fresh_dir(_var_dir() / "run" / str(port)) / "draining"
    env["HOMEPOCKET_DRAIN_FILE"] = str(drain_file)
    drain_seconds = env_float("DRAIN_SECONDS", 5.0)

    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda sig, frame: received.append(sig))
    signal.signal(signal.SIGINT, lambda sig, frame: received.append(sig))
    child = subprocess.Popen(granian_command(host, port, workers), env=env, preexec_fn=die_with_parent)
    while child.poll() is None and not received:
        time.sleep(0.1)
    if child.poll() is not None:
        return child.returncode
    if received[0] == signal.SIGTERM and drain_seconds > 0:
        drain_file.touch()
        deadline = time.monotonic() + drain_seconds
        # A second signal during the drain (an impatient operator) stops at once.
        while time.monotonic() < deadline and len(received) == 1 and child.poll() is None:
            time.sleep(0.05)
    if child.poll() is None:
        child.send_signal(signal.SIGINT if received[-1] == signal.SIGINT else signal.SIGTERM)
    try:
        return child.wait(env_float("GRACEFUL_TIMEOUT_SECONDS", 20.0) + 10)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=env_str("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=env_int("PORT", 8000))
    parser.add_argument("--workers", type=int, default=env_int("WEB_CONCURRENCY", 1))
    args = parser.parse_args(argv)
    return serve(args.host, args.port, args.workers)


if __name__ == "__main__":
    sys.exit(main())
