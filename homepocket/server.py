"""Run the ASGI app under uvicorn, with a drain period on SIGTERM and N worker processes.

Why our own entry point rather than the `uvicorn` command:
- SIGTERM first makes /health answer 503 for DRAIN_SECONDS while requests keep being served, so a
  load balancer stops sending traffic before the listener closes (SIGINT stops at once);
- with several workers, each one is our DrainingServer, and every worker writes its metrics to
  one PROMETHEUS_MULTIPROC_DIR so /metrics on any worker reports the whole node;
- a worker is started with PR_SET_PDEATHSIG, so none outlives this process.

Usage: python -m homepocket.server --host 127.0.0.1 --port 8000 --workers 1
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import uvicorn

from homepocket.env import env_float, env_int, env_list, env_str
from homepocket.process_guard import die_with_parent

logger = logging.getLogger("homepocket.server")


class DrainingServer(uvicorn.Server):
    drain_seconds: float = 5.0

    def handle_exit(self, sig, frame) -> None:
        from homepocket.drain import drain_active, drain_begin

        if sig == signal.SIGTERM and self.drain_seconds > 0 and not drain_active():
            drain_begin()
            logger.info("draining", extra={"drain_seconds": self.drain_seconds})
            timer = threading.Timer(self.drain_seconds, super().handle_exit, (sig, frame))
            timer.daemon = True
            timer.start()
            return
        super().handle_exit(sig, frame)


def uvicorn_config(host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        "homepocket.asgi:application",
        host=host,
        port=port,
        lifespan="off",  # Django has no lifespan handlers; Channels' router would refuse the scope
        log_config=None,  # Django's LOGGING configures the handlers, redaction included
        access_log=False,  # homepocket.middleware writes the access log, with route templates
        server_header=False,
        proxy_headers=bool(env_list("FORWARDED_ALLOW_IPS")),
        forwarded_allow_ips=env_list("FORWARDED_ALLOW_IPS") or None,
        timeout_keep_alive=env_int("KEEPALIVE_SECONDS", 5),
        timeout_graceful_shutdown=env_float("GRACEFUL_TIMEOUT_SECONDS", 20.0),
        ws_max_size=env_int("WS_MAX_FRAME_BYTES", 1024 * 1024),
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
    )


def _serve_one(config: uvicorn.Config, sockets=None) -> None:
    server = DrainingServer(config)
    server.drain_seconds = env_float("DRAIN_SECONDS", 5.0)
    server.run(sockets=sockets)


def _worker_main(config: uvicorn.Config, sock) -> None:
    die_with_parent()
    _serve_one(config, [sock])


def _prepare_metrics_dir(port: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    else:
        var_dir = Path(env_str("HOMEPOCKET_VAR_DIR", str(Path(__file__).resolve().parent.parent / "var")))
        path = var_dir / "prometheus" / str(port)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    # Values of a previous run would be summed into this one's.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def serve(host: str, port: int, workers: int) -> int:
    _prepare_metrics_dir(port)
    config = uvicorn_config(host, port)
    if workers <= 1:
        _serve_one(config)
        return 0
    return _supervise(config, workers)


def _supervise(config: uvicorn.Config, workers: int) -> int:
    """Keep `workers` processes serving one listening socket; pass SIGTERM/SIGINT on to them."""
    sock = config.bind_socket()
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    received: list[int] = []

    def on_signal(sig, frame):
        received.append(sig)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def start():
        process = context.Process(target=_worker_main, args=(config, sock), daemon=False)
        process.start()
        return process

    processes = [start() for _ in range(workers)]
    logger.info("workers started", extra={"workers": workers, "port": config.port})
    while not stopping.wait(0.5):
        for index, process in enumerate(processes):
            if not process.is_alive():
                logger.error("worker died; starting another", extra={"exitcode": process.exitcode})
                processes[index] = start()
    sig = received[0] if received else signal.SIGTERM
    for process in processes:
        if process.is_alive():
            os.kill(process.pid, sig)
    deadline = time.monotonic() + env_float("DRAIN_SECONDS", 5.0) + env_float("GRACEFUL_TIMEOUT_SECONDS", 20.0) + 5
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=env_str("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=env_int("PORT", 8000))
    parser.add_argument("--workers", type=int, default=env_int("WEB_CONCURRENCY", 1))
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "homepocket.settings")
    return serve(args.host, args.port, args.workers)


if __name__ == "__main__":
    sys.exit(main())
