"""Node heartbeats: every server process says it is alive, and what it carries, every 10 s.

Each web process (a granian worker) writes one heartbeat every HEARTBEAT_INTERVAL_SECONDS that
lives HEARTBEAT_TTL_SECONDS (10 s / 30 s): its node id, pid, version, start time, open relay
sockets, requests per second since the previous beat, and whether its signers answer PING. A
process that stops cleanly removes its heartbeat (homepocket.shutdown); one that dies drops off
when its TTL runs out, so a dead node leaves the cluster page within 30 s.

Where a heartbeat lives:
- **distributed mode** (REDIS_URL): `SET {prefix}:hb:<node>/<pid> <json> PX ttl`, and the same
  name in the sorted set `{prefix}:hb:index` scored by its expiry, so the cluster page reads the
  live ones with one ZRANGEBYSCORE and one MGET (never a SCAN over the whole keyspace);
- **embedded mode**: a file per process under `var/run/heartbeats/`, the expiry in the file.
  Every process of an embedded deployment runs on one machine, so a directory is shared state
  enough, and it needs no table (the database stays the business data's).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings

from homepocket.redis_clients import sync_client
from homepocket.process_loops import ProcessLoop

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Heartbeat:
    node: str
    pid: int
    version: str
    started_at: float  # Unix seconds
    seen_at: float
    expires_at: float
    sockets: int
    requests_per_second: float
    signer: str  # "up", "down (1 of 2)", "none"
    # Private keys in the node's signers' caches by state ({"warm", "cool", "invalid"}), summed over
    # the signers that answered; None when none did (or a beat from before the signers reported it).
    key_cache: dict[str, int] | None = None

    @property
    def name(self) -> str:
        return f"{self.node}/{self.pid}"


@dataclass(frozen=True)
class NodeSummary:
    """One node: the sum of its live processes' heartbeats."""

    node: str
    processes: int
    version: str
    started_at: float
    seen_at: float
    sockets: int
    requests_per_second: float
    signer: str
    key_cache: dict[str, int] | None = None


def node_id() -> str:
    return settings.NODE_ID or socket.gethostname()


# --- stores -------------------------------------------------------------------------------------


class RedisHeartbeats:
    def __init__(self, client, prefix: str):
        self.client, self.prefix = client, prefix

    def _key(self, name: str) -> str:
        return f"{self.prefix}:hb:{name}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:hb:index"

    def write(self, beat: Heartbeat) -> None:
        ttl_ms = max(1, int((beat.expires_at - beat.seen_at) * 1000))
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._key(beat.name), json.dumps(asdict(beat)), px=ttl_ms)
            pipe.zadd(self._index, {beat.name: beat.expires_at})
            pipe.zremrangebyscore(self._index, "-inf", beat.seen_at)
            pipe.execute()

    def live(self, now: float) -> list[Heartbeat]:
        names = [n.decode() for n in self.client.zrangebyscore(self._index, now, "+inf")]
        if not names:
            return []
        values = self.client.mget([self._key(name) for name in names])
        return [Heartbeat(**json.loads(value)) for value in values if value is not None]

    def remove(self, name: str) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(name))
            pipe.zrem(self._index, name)
            pipe.execute()


class FileHeartbeats:
    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, name: str) -> Path:
        return self.directory / (name.replace("/", "@").replace(os.sep, "_") + ".json")

    def write(self, beat: Heartbeat) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(beat.name)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(beat)))
        temporary.replace(path)  # readers never see half a file

    def live(self, now: float) -> list[Heartbeat]:
        beats = []
        for path in sorted(self.directory.glob("*.json")) if self.directory.exists() else []:
            try:
                beat = Heartbeat(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # removed or replaced while we read: the next read sees it
            if beat.expires_at >= now:
                beats.append(beat)
            else:
                path.unlink(missing_ok=True)  # a dead process's last beat
        return beats

    def remove(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)


def heartbeat_store():
    if settings.REDIS_URL:
        return RedisHeartbeats(sync_client("heartbeat"), settings.CACHE_KEY_PREFIX)
    return FileHeartbeats(Path(settings.VAR_DIR) / "run" / "heartbeats")


# --- what a process reports -------------------------------------------------------------------


def _metric_total(metric, sample_name: str) -> float:
    return sum(s.value for family in metric.collect() for s in family.samples if s.name == sample_name)


def _requests_total() -> float:
    from homepocket import metrics

    return _metric_total(metrics.REQUESTS, "homepocket_http_requests_total")


def _relay_sockets() -> int:
    from apps.relay import metrics as relay_metrics

    return int(_metric_total(relay_metrics.SOCKETS, "homepocket_relay_sockets"))


async def _signer_state() -> tuple[str, dict[str, int] | None]:
    """The signers' state ("up", "down (1 of 2)", "none") and their key-cache states, summed."""
    if not settings.SIGNER_SOCKETS:
        return "none", None
    from apps.signing.client import signer_client
    from signer.protocol import KEY_CACHE_STATES

    try:
        answers = await signer_client().status_all()
    except Exception:
        return "down", None
    down = sum(answer is None or not answer.rng_ok for answer in answers.values())
    counts = [answer.key_cache for answer in answers.values() if answer is not None and answer.key_cache is not None]
    key_cache = {state: sum(c[i] for c in counts) for i, state in enumerate(KEY_CACHE_STATES)} if counts else None
    return ("up" if not down else f"down ({down} of {len(answers)})"), key_cache


class HeartbeatWriter:
    """This process's beats; `run()` is the loop the ASGI lifespan starts."""

    def __init__(self, store=None):
        self.store = store
        self.stopped = False
        self.pid = os.getpid()
        self.node = node_id()
        self.started_at = time.time()
        self._last = (time.monotonic(), _requests_total())

    @property
    def name(self) -> str:
        return f"{self.node}/{self.pid}"

    def _store(self):
        if self.store is None:
            self.store = heartbeat_store()
        return self.store

    async def beat(self) -> Heartbeat:
        now_mono, requests = time.monotonic(), _requests_total()
        last_mono, last_requests = self._last
        self._last = (now_mono, requests)
        rate = (requests - last_requests) / (now_mono - last_mono) if now_mono > last_mono else 0.0
        signer, key_cache = await _signer_state()
        now = time.time()
        beat = Heartbeat(
            node=self.node, pid=self.pid, version=settings.HOMEPOCKET_VERSION, started_at=self.started_at,
            seen_at=now, expires_at=now + settings.HEARTBEAT_TTL_SECONDS, sockets=_relay_sockets(),
            requests_per_second=round(rate, 2), signer=signer, key_cache=key_cache,
        )  # fmt: skip
        await sync_to_async(self._write, thread_sensitive=False)(beat)
        return beat

    def _write(self, beat: Heartbeat) -> None:
        if not self.stopped:  # a beat racing the shutdown must not bring the removed heartbeat back
            self._store().write(beat)

    async def run(self) -> None:
        while True:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: this beat is skipped; the node shows stale, then gone
                logger.warning("heartbeat not written", extra={"error_class": type(exc).__name__})
            await asyncio.sleep(settings.HEARTBEAT_INTERVAL_SECONDS)

    def remove(self) -> None:
        self.stopped = True
        try:
            self._store().remove(self.name)
        except Exception as exc:
            logger.warning("heartbeat not removed; it expires with its TTL", extra={"error_class": type(exc).__name__})


_loop = ProcessLoop("heartbeat")


def heartbeat_start() -> None:
    """Start beating from this process's event loop (the ASGI lifespan startup); once per process."""
    writer = HeartbeatWriter()
    # At a clean stop: no more beats, and this process leaves the cluster page at once.
    _loop.start(writer.run, at_stop=writer.remove)


def heartbeat_stop() -> None:
    """No more beats, and the heartbeat removed (the lifespan's shutdown, homepocket/lifespan.py)."""
    _loop.stop()


# --- the cluster page -------------------------------------------------------------------------


def nodes_live(*, now: float | None = None) -> list[NodeSummary]:
    """The live nodes, each the sum of its live processes, by node id."""
    beats = heartbeat_store().live(time.time() if now is None else now)
    by_node: dict[str, list[Heartbeat]] = {}
    for beat in beats:
        by_node.setdefault(beat.node, []).append(beat)
    nodes = []
    for node, group in sorted(by_node.items()):
        signers = {beat.signer for beat in group}
        nodes.append(NodeSummary(
            node=node, processes=len(group), version=", ".join(sorted({beat.version for beat in group})),
            started_at=min(beat.started_at for beat in group), seen_at=max(beat.seen_at for beat in group),
            sockets=sum(beat.sockets for beat in group),
            requests_per_second=round(sum(beat.requests_per_second for beat in group), 2),
            signer=signers.pop() if len(signers) == 1 else "mixed: " + ", ".join(sorted(signers)),
            # Every process of a node asks the same signers: the newest report, not a sum.
            key_cache=max(group, key=lambda beat: beat.seen_at).key_cache,
        ))  # fmt: skip
    return nodes
