"""Kill one node of a Cluster under relay and HTTP load, and record what the clients saw.

Shared by the kill tests (tests/e2e/test_cluster_e2e.py), which assert that every client came
back and no acknowledged write was lost, and bench/cluster.py, which reports how long it took.

Load, all through nginx:
- relay: `devices` phones of one book, each in a loop sending an operation, then a ping, and
  reading until its pong; when its socket dies it reconnects through nginx at once (retrying
  every 50 ms), like the client library's reconnect on a retryable close (docs/client.md);
- HTTP: `writers` threads creating books (one POST each, a durable write); every 2xx is an
  acknowledged write, kept to be checked afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from homepocket_client import DeviceIdentity, HomePocketClient, InvalidToken, NotFound
from homepocket_client.relay import relay_connect
from tests.e2e.relay_support import book_of, ciphertext

RETRY_SECONDS = 0.05
# A frame not answered in this long counts as a lost socket (a kill closes TCP at once; this only
# bounds a socket that hangs).
PONG_TIMEOUT_SECONDS = 5.0


@dataclass
class KillOutcome:
    signal_name: str
    # Per socket that lost its node: from the moment the client saw the close to a pong on the
    # new socket (reconnect), and from the signal to that pong (outage, includes a drain).
    reconnect_seconds: list[float] = field(default_factory=list)
    outage_seconds: list[float] = field(default_factory=list)
    sockets_lost: int = 0
    sockets_back: int = 0
    relay_round_trips: int = 0
    writes_acknowledged: list[DeviceIdentity] = field(default_factory=list)
    writes_failed: int = 0
    # What the killed node's own /ready answered after the signal ("unreachable" once it is gone),
    # and what /ready answered through nginx meanwhile.
    node_ready: list[str] = field(default_factory=list)
    nginx_ready: list[int] = field(default_factory=list)


async def kill_under_load(
    cluster, *, node: int, sig: int, devices: int = 8, writers: int = 4, before: float = 1.5, after: float = 4.0
) -> KillOutcome:
    """Load the cluster, send `sig` to node `node` (0-based) after `before` seconds, go on for `after`."""
    outcome = KillOutcome(signal.Signals(sig).name)
    with HomePocketClient(cluster.url, timeout=30) as api:
        phones = book_of(api, devices, "load")
    stop = asyncio.Event()
    ready: set = set()  # device ids with a first round trip done: the kill waits for every phone
    killed_at: list[float] = []

    async def phone(identity: DeviceIdentity) -> None:
        lost_at: float | None = None
        while not stop.is_set():
            try:
                socket = await relay_connect(cluster.url, identity, open_timeout=PONG_TIMEOUT_SECONDS)
            except (OSError, InvalidHandshake, InvalidStatus, asyncio.TimeoutError):
                await asyncio.sleep(RETRY_SECONDS)
                continue
            try:
                while not stop.is_set():
                    await socket.send_operation(ciphertext())
                    await socket.ping()
                    while (await asyncio.wait_for(socket.receive(), PONG_TIMEOUT_SECONDS))["type"] != "pong":
                        pass
                    if lost_at is not None:  # the first pong on the new socket: back
                        now = time.monotonic()
                        outcome.sockets_back += 1
                        outcome.reconnect_seconds.append(now - lost_at)
                        outcome.outage_seconds.append(now - killed_at[0])
                        lost_at = None
                    ready.add(identity.device_id)
                    outcome.relay_round_trips += 1
                    await asyncio.sleep(0.05)
            except (ConnectionClosed, OSError, asyncio.TimeoutError):
                if killed_at and lost_at is None:
                    lost_at = time.monotonic()
                    outcome.sockets_lost += 1
            finally:
                await socket.close()

    def writer() -> None:
        with HomePocketClient(cluster.url, timeout=10) as client:
            while not stop.is_set():
                identity = DeviceIdentity.new("written under load")
                try:
                    client.create_book(identity)
                except Exception:  # a 502 or a reset while the node dies: not acknowledged
                    outcome.writes_failed += 1
                else:
                    outcome.writes_acknowledged.append(identity)

    def watch_ready(victim) -> None:
        while not stop.is_set():
            outcome.node_ready.append(_ready_probe(victim))
            try:
                outcome.nginx_ready.append(httpx.get(f"{cluster.url}/ready", timeout=5).status_code)
            except httpx.HTTPError:
                outcome.nginx_ready.append(0)
            time.sleep(0.1)

    tasks = [asyncio.create_task(phone(p)) for p in phones]
    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for thread in threads:
        thread.start()
    victim = cluster.nodes[node]
    try:
        deadline = time.monotonic() + 60
        while len(ready) < len(phones) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(before)
        killed_at.append(time.monotonic())
        node_signal(victim, sig)
        watcher = threading.Thread(target=watch_ready, args=(victim,))
        watcher.start()
        await asyncio.sleep(after)
        # Let sockets still coming back finish (a drain may hold them), bounded.
        deadline = time.monotonic() + 30
        while outcome.sockets_back < outcome.sockets_lost and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        # A drain (SIGTERM) may outlast all that on a slow machine: the node's /ready is watched
        # until its process has ended, however long the drain took (bounded).
        await asyncio.to_thread(_exit_wait, victim, 60)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for thread in threads:
            thread.join()
        if killed_at:
            watcher.join()
            outcome.node_ready.append(_ready_probe(victim))  # and once more, after the exit
    return outcome


def _ready_probe(node) -> str:
    """The node's own /ready status, or "unreachable" once nothing answers."""
    try:
        return str(httpx.get(f"{node.url}/ready", timeout=5).status_code)
    except httpx.HTTPError:
        return "unreachable"


def _exit_wait(node, timeout: float) -> None:
    try:
        node.process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass  # the assertion on node_ready reports a node that never stopped


def node_signal(node, sig: int) -> None:
    """SIGTERM to the node's main process, as an operator or orchestrator stops it; SIGKILL to every
    process of the node at once, as when its machine or container dies. (SIGKILL to the main
    process alone is not a dead node: granian gets SIGTERM from its parent-death signal and
    shuts down gracefully, homepocket/process_guard.py.)"""
    if sig != signal.SIGKILL:
        node.send_signal(sig)
        return
    for pid in [node.process.pid, *_descendants(node.process.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        children = []
        for listing in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                children += [int(child) for child in listing.read_text().split()]
            except FileNotFoundError:  # the thread or process exited meanwhile
                pass
        found += children
        todo += children
    return found


def writes_missing(cluster, identities: list[DeviceIdentity]) -> list[DeviceIdentity]:
    """Acknowledged book creations the cluster no longer knows (asked through nginx)."""
    missing = []
    with HomePocketClient(cluster.url, timeout=30) as api:
        for identity in identities:
            try:
                known = {device.device_id for device in api.list_devices(identity).devices}
            except (InvalidToken, NotFound):  # the device (or its book) does not exist
                known = set()
            if identity.device_id not in known:
                missing.append(identity)
    return missing


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]
