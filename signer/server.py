"""The signer process: serve signer/protocol.py frames on a Unix socket, one event loop, no threads
on the hot path.

A frame is answered in the `data_received` call that delivered it when its key is cached (the
common case: no task, no await); creates, pings and unlocks run as tasks and answer when done, so
answers may come back in any order (the request id matches them up).

Usage: python -m signer --socket var/run/signer-0.sock [--metrics-port 9101]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from signer import protocol as p
from signer.custody import CustodyError, CustodyUnavailable, custody_from_environ
from signer.keycache import State
from signer.engine import CustodyDown, Engine, RngSelfCheckFailed, UnlockPending, UnwrapFailed, rng_self_check

log = logging.getLogger("signer")

SIGN_LATENCY = Histogram(
    "homepocket_sign_latency_seconds",
    "Time a signature spends in the signer, by phase: queue (frame received to handled), cache (key lookup), sign, total.",
    ["phase"],
    buckets=(0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
)
CACHE_ENTRIES = Gauge("homepocket_signer_cache_entries", "Cached keys and data keys by state.", ["cache", "state"])
LOADS = Counter(
    "homepocket_signer_loads_total", "Unlocks (miss, INVALID) and refreshes (COOL) run, by outcome.", ["cache", "kind", "outcome"]
)
LOAD_SECONDS = Histogram(
    "homepocket_signer_load_duration_seconds", "Time an unlock or refresh took.", ["cache", "kind"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
)  # fmt: skip
ANSWERS = Counter("homepocket_signer_answers_total", "Answers by op and status.", ["op", "status"])
HOUSEKEEPING_SECONDS = 5.0


def _observe_load(cache: str, kind: str, outcome: str, seconds: float) -> None:
    LOADS.labels(cache, kind, outcome).inc()
    LOAD_SECONDS.labels(cache, kind).observe(seconds)


_QUEUE = SIGN_LATENCY.labels("queue")
_CACHE = SIGN_LATENCY.labels("cache")
_SIGN = SIGN_LATENCY.labels("sign")
_TOTAL = SIGN_LATENCY.labels("total")
_SIGN_OK = ANSWERS.labels("sign", "ok")


class SignerProtocol(asyncio.Protocol):
    def __init__(self, engine: Engine):
        self.engine = engine
        self.reader = p.FrameReader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        received = time.perf_counter()
        try:
            frames = self.reader.feed(data)
        except p.ProtocolError as exc:
            log.warning("signer.protocol_error reason=%s", exc)
            self.transport.close()
            return
        out = []
        engine = self.engine
        for request_id, op, body in frames:
            try:
                request = p.decode_request(request_id, op, body)
            except p.ProtocolError as exc:
                out.append(p.encode_response(p.ErrorResult(request_id, p.Status.BAD_REQUEST, str(exc))))
                continue
            if isinstance(request, p.SignRequest):
                started = time.perf_counter()
                state, entry = engine.keys.lookup(request.key_id)
                looked_up = time.perf_counter()
                if entry is not None and state is not State.INVALID:
                    if state is State.COOL:
                        engine.keys.refresh_in_background(request.key_id, entry, request.material)
                    sig = engine.sign_entry(entry, request.digest)
                    out.append(p.encode_response(p.SignResult(request_id, sig.compact, sig.recovery_id, sig.der)))
                    done = time.perf_counter()
                    _QUEUE.observe(started - received)
                    _CACHE.observe(looked_up - started)
                    _SIGN.observe(done - looked_up)
                    _TOTAL.observe(done - received)
                    _SIGN_OK.inc()
                    continue
            asyncio.get_running_loop().create_task(self._answer(request, received))
        if out:
            self._write(b"".join(out))

    async def _answer(self, request: p.Request, received: float) -> None:
        op = type(request).__name__.removesuffix("Request").lower()
        try:
            response = await self._handle(request)
        except UnlockPending:
            response = p.ErrorResult(request.request_id, p.Status.UNLOCK_REQUIRED, "unlocking")
        except UnwrapFailed:
            response = p.ErrorResult(request.request_id, p.Status.UNWRAP_FAILED, "wrapped key does not open")
        except (CustodyDown, CustodyUnavailable):
            response = p.ErrorResult(request.request_id, p.Status.RETRY_LATER, "custodian unreachable")
        except CustodyError:
            response = p.ErrorResult(request.request_id, p.Status.UNWRAP_FAILED, "custody refused")
        except Exception:
            log.exception("signer.internal_error op=%s", op)
            response = p.ErrorResult(request.request_id, p.Status.INTERNAL, "internal error")
        status = "ok" if not isinstance(response, p.ErrorResult) else response.status.name.lower()
        ANSWERS.labels(op, status).inc()
        if isinstance(request, p.SignRequest) and status == "ok":
            _TOTAL.observe(time.perf_counter() - received)
        self._write(p.encode_response(response))

    async def _handle(self, request: p.Request) -> p.Response:
        if isinstance(request, p.SignRequest):
            sig = await self.engine.sign(request.key_id, request.digest, request.material)
            return p.SignResult(request.request_id, sig.compact, sig.recovery_id, sig.der)
        if isinstance(request, p.CreateRequest):
            public_key, material, master_key_id = await self.engine.create(request.key_id)
            log.info("signer.key_created key_id=%s master_key_id=%s", request.key_id, master_key_id)
            return p.CreateResult(request.request_id, public_key, material, master_key_id)
        keys = self.engine.state_counts()["key"]
        counts = tuple(keys.get(state, 0) for state in p.KEY_CACHE_STATES)
        return p.PingResult(request.request_id, rng_ok=True, pid=os.getpid(), key_cache=counts)


async def _housekeeping(engine: Engine) -> None:
    while True:
        await asyncio.sleep(HOUSEKEEPING_SECONDS)
        engine.evict_expired()
        for cache, counts in engine.state_counts().items():
            for state, count in counts.items():
                CACHE_ENTRIES.labels(cache, state).set(count)


def _claim_socket_path(path: Path) -> None:
    """Remove a stale socket file, but never one a live signer still answers on."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise SystemExit(f"signer: another signer is serving {path}")


async def serve(socket_path: Path, engine: Engine) -> None:
    loop = asyncio.get_running_loop()
    _claim_socket_path(socket_path)
    old_umask = os.umask(0o177)  # the socket is the web process's (same user) and nobody else's
    try:
        server = await loop.create_unix_server(lambda: SignerProtocol(engine), path=str(socket_path), backlog=1024)
    finally:
        os.umask(old_umask)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    housekeeping = loop.create_task(_housekeeping(engine))
    log.info("signer.ready socket=%s pid=%s", socket_path, os.getpid())
    print(json.dumps({"event": "signer.ready", "socket": str(socket_path), "pid": os.getpid()}), flush=True)
    await stop.wait()
    housekeeping.cancel()
    server.close()
    try:
        socket_path.unlink()
    except FileNotFoundError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m signer", description="The Home Pocket signing sidecar.")
    parser.add_argument("--socket", required=True, help="Unix socket path to serve")
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("SIGNER_METRICS_PORT", "0")))
    args = parser.parse_args(argv)
    log_format = '{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","message":"%(message)s"}'
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), stream=sys.stderr, format=log_format)
    try:
        rng_self_check()
    except RngSelfCheckFailed as exc:
        print(f"signer: RNG self-check failed, refusing to start: {exc}", file=sys.stderr)
        return 2
    try:
        custody = custody_from_environ()
        probe = os.urandom(32)
        blob, _ = custody.wrap(probe, context=b"signer-start")
        if custody.unwrap(blob, context=b"signer-start") != probe:
            raise CustodyError("master key round trip differs")
    except (CustodyError, CustodyUnavailable) as exc:
        print(f"signer: master key custody check failed, refusing to start: {exc}", file=sys.stderr)
        return 3
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1")
    engine = Engine(custody, on_load=_observe_load)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(Path(args.socket), engine))
    else:
        uvloop.run(serve(Path(args.socket), engine))
    return 0
