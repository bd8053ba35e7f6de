"""Run the ASGI app under granian or uvicorn, with a drain period on SIGTERM and N worker processes.

ASGI_SERVER picks the server. granian (the default) was chosen by measurement for HTTP throughput
over uvicorn and daphne; uvicorn (websockets-sansio) holds a WebSocket in about a fifth of
granian's memory, so nodes that mostly hold relay sockets run it (docs/PERFORMANCE.md, "ASGI
server choice" and "Relay fan-out"). This entry point wraps either for what a deployment needs
beyond the server itself, the same for both:
- SIGTERM first makes /health answer 503 for DRAIN_SECONDS while requests are still served (a
  file under var/run/ tells every worker process; relay sockets close with 1012 then), so a load
  balancer stops sending traffic before the listener closes; then the server stops gracefully
  (requests in flight get GRACEFUL_TIMEOUT_SECONDS, then the lifespan shutdown runs the apps'
  hooks). SIGINT (Ctrl-C) skips the drain period.
- every worker writes its metrics to one PROMETHEUS_MULTIPROC_DIR, so /metrics answered by any
  worker reports the whole node;
- the server runs with PR_SET_PDEATHSIG, so it never outlives this process (uvicorn's worker
  processes ask for it themselves: homepocket/asgi_uvicorn.py).

Usage: python -m homepocket.server --host 127.0.0.1 --port 8000 --workers 1 [--server uvicorn]
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
# The shortest drain, also with DRAIN_SECONDS=0: time for every worker to see the drain file and
# close its relay sockets with 1012 (granian would drop them without a close frame at its stop).
SOCKET_CLOSE_SECONDS = 0.5


def _var_dir() -> Path:
    return Path(env_str("HOMEPOCKET_VAR_DIR") or BASE_DIR / "var").resolve()


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)  # values of a previous run would be summed into this one's
    path.mkdir(parents=True, exist_ok=True)
    return path


SERVERS = ("granian", "uvicorn")
# Longer than an nginx upstream's idle keep-alive (60 s), so the proxy, not the node, closes an
# idle connection: a node that closes first races the proxy's next request on it (a 502).
UVICORN_KEEP_ALIVE_SECONDS = 75


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


def uvicorn_command(host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn",
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
        "--loop", "uvloop",
        "--http", "httptools",
        # websockets' sans-I/O protocol: ~27 KiB per idle socket where granian takes ~150 KiB.
        "--ws", "websockets-sansio",
        # Relay payloads are ciphertext: compression would cost CPU and a zlib state per socket
        # for nothing (granian offers no compression either).
        "--ws-per-message-deflate", "false",
        "--lifespan", "on",
        "--app-dir", str(BASE_DIR),
        "--no-access-log",  # homepocket.middleware writes the access log, with route templates
        # The app alone decides whom to believe about the client (TRUSTED_PROXIES, homepocket/client_ip.py).
        "--no-proxy-headers",
        "--no-server-header",
        "--log-level", env_str("SERVER_LOG_LEVEL", "warning"),
        "--timeout-graceful-shutdown", str(int(env_float("GRACEFUL_TIMEOUT_SECONDS", 20.0))),
        "--timeout-keep-alive", str(UVICORN_KEEP_ALIVE_SECONDS),
        "--backlog", str(env_int("LISTEN_BACKLOG", 1024)),
        "homepocket.asgi_uvicorn:application",
    ]  # fmt: skip


def server_command(server: str, host: str, port: int, workers: int) -> list[str]:
    if server == "uvicorn":
        return uvicorn_command(host, port, workers)
    return granian_command(host, port, workers)


def serve(host: str, port: int, workers: int, server: str = "granian") -> int:
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
    child = subprocess.Popen(server_command(server, host, port, workers), env=env, preexec_fn=die_with_parent)
    while child.poll() is None and not received:
        time.sleep(0.1)
    if child.poll() is not None:
        return child.returncode
    if received[0] == signal.SIGTERM:
        drain_file.touch()
        deadline = time.monotonic() + max(drain_seconds, SOCKET_CLOSE_SECONDS)
        # A second signal during the drain (an impatient operator) stops at once.
        while time.monotonic() < deadline and len(received) == 1 and child.poll() is None:
            time.sleep(0.05)
    stop_signal = signal.SIGINT if received[-1] == signal.SIGINT else signal.SIGTERM
    if child.poll() is None:
        child.send_signal(stop_signal)
    try:
        code = child.wait(env_float("GRACEFUL_TIMEOUT_SECONDS", 20.0) + 10)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()
    # uvicorn ends by raising the signal it was stopped with again: a stop we asked for is a clean exit.
    return 0 if code == -stop_signal else code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=env_str("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=env_int("PORT", 8000))
    parser.add_argument("--workers", type=int, default=env_int("WEB_CONCURRENCY", 1))
    parser.add_argument("--server", default=env_str("ASGI_SERVER") or "granian", help="granian or uvicorn (ASGI_SERVER)")
    args = parser.parse_args(argv)
    if args.server not in SERVERS:
        parser.error(f"ASGI_SERVER / --server must be one of {', '.join(SERVERS)}, not {args.server!r}")
    return serve(args.host, args.port, args.workers, args.server)


if __name__ == "__main__":
    sys.exit(main())
