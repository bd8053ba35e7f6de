"""The only module that opens a signer socket (CONVENTIONS 10).

Each worker process keeps, per event loop, a small pool of persistent Unix-socket connections to
every signer; each connection carries many requests at once (request ids, signer/protocol.py).
A key id goes to one signer by consistent hashing (a ring of virtual nodes, so adding or removing
a signer moves only its share of keys); when that signer cannot be reached, the next one on the
ring takes the request (it unlocks the key from the wrapped material the request carries). A
request already sent to a signer that dies is answered SignerUnavailable, never left hanging:
at most the requests in flight at that moment are lost, and signing is deterministic, so a retry
is harmless.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import time
import weakref
from uuid import UUID

from signer import protocol as p

VIRTUAL_NODES = 64
# A signer that refused a connection is skipped for this long before it is tried again.
DOWN_SECONDS = 1.0
MAX_IN_FLIGHT_PER_CONNECTION = 4096


class SignerUnavailable(Exception):
    """No signer could answer: unreachable, died with the request in flight, overloaded or too slow."""


class SignerRefused(Exception):
    """A signer answered with a status other than OK."""

    def __init__(self, status: p.Status, reason: str):
        super().__init__(f"{status.name}: {reason}")
        self.status = status


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = p.FrameReader()
        self.pending: dict[int, tuple[asyncio.Future, p.Op]] = {}
        self.ids = itertools.count(1)
        self.closed = False
        self.outbox: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()

    def connection_lost(self, exc) -> None:
        self.closed = True
        pending, self.pending = self.pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(SignerUnavailable("signer connection lost with the request in flight"))

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except p.ProtocolError:
            self.transport.close()
            return
        for request_id, status, body in frames:
            waiter = self.pending.pop(request_id, None)
            if waiter is None:
                continue  # its caller gave up (timeout); the answer is dropped
            future, op = waiter
            if future.done():
                continue
            try:
                future.set_result(p.decode_response(request_id, status, body, op))
            except p.ProtocolError as exc:
                future.set_exception(SignerUnavailable(f"undecodable answer: {exc}"))

    def send(self, build, op: p.Op) -> asyncio.Future:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise SignerUnavailable("connection closed")
        if len(self.pending) >= MAX_IN_FLIGHT_PER_CONNECTION:
            raise SignerUnavailable("too many requests in flight")
        request_id = next(self.ids) & 0xFFFFFFFF
        future = self.loop.create_future()
        self.pending[request_id] = (future, op)
        # Frames of one loop iteration go out in one write: one syscall for many requests.
        if not self.outbox:
            self.loop.call_soon(self._flush)
        self.outbox.append(p.encode_request(build(request_id)))
        return future

    def _flush(self) -> None:
        frames, self.outbox = self.outbox, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(frames))

    def forget(self, future: asyncio.Future) -> None:
        for request_id, (f, _) in list(self.pending.items()):
            if f is future:
                del self.pending[request_id]
                return


class SignerNode:
    """One signer socket and this loop's connections to it."""

    def __init__(self, path: str, pool_size: int):
        self.path = path
        self.slots: list[_Connection | None] = [None] * pool_size
        self.locks = [asyncio.Lock() for _ in range(pool_size)]
        self.turn = itertools.count()
        self.down_until = 0.0

    @property
    def up(self) -> bool:
        return time.monotonic() >= self.down_until

    async def connection(self) -> _Connection:
        slot = next(self.turn) % len(self.slots)
        conn = self.slots[slot]
        if conn is not None and not conn.closed:
            return conn
        async with self.locks[slot]:
            conn = self.slots[slot]
            if conn is not None and not conn.closed:
                return conn
            try:
                _, conn = await asyncio.get_running_loop().create_unix_connection(_Connection, self.path)
            except OSError as exc:
                self.down_until = time.monotonic() + DOWN_SECONDS
                raise SignerUnavailable(f"cannot connect: {type(exc).__name__}") from None
            self.down_until = 0.0
            self.slots[slot] = conn
            return conn

    def close(self) -> None:
        for conn in self.slots:
            # A connection of a loop that has closed (a test's async_to_sync) goes with its loop.
            if conn is not None and conn.transport is not None and not conn.loop.is_closed():
                conn.transport.close()


def _hash(value: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(value, digest_size=8).digest(), "big")


class SignerRing:
    """Consistent hashing of key ids onto signers."""

    def __init__(self, nodes: list[SignerNode], vnodes: int = VIRTUAL_NODES):
        self.nodes = nodes
        points = sorted((_hash(f"{node.path}#{i}".encode()), n) for n, node in enumerate(nodes) for i in range(vnodes))
        self._hashes = [h for h, _ in points]
        self._owners = [n for _, n in points]

    def nodes_for(self, key_id: UUID) -> list[SignerNode]:
        """Every signer, in ring order from the key's point: the owner first, then its fail-overs."""
        if not self.nodes:
            return []
        start = bisect.bisect(self._hashes, _hash(key_id.bytes)) % len(self._hashes)
        order: list[SignerNode] = []
        seen: set[int] = set()
        for owner in itertools.chain(self._owners[start:], self._owners[:start]):
            if owner not in seen:
                seen.add(owner)
                order.append(self.nodes[owner])
                if len(order) == len(self.nodes):
                    break
        return order


class SignerClient:
    def __init__(self, paths: list[str], *, pool_size: int = 2, timeout: float = 2.0):
        self.nodes = [SignerNode(path, pool_size) for path in paths]
        self.ring = SignerRing(self.nodes)
        self.timeout = timeout

    async def _call(self, key_id: UUID, build, op: p.Op):
        candidates = self.ring.nodes_for(key_id)
        # Signers known down are tried last, not skipped: one may have come back.
        ordered = [n for n in candidates if n.up] + [n for n in candidates if not n.up]
        for node in ordered:
            try:
                conn = await node.connection()
                future = conn.send(build, op)
            except SignerUnavailable:
                continue  # nothing was sent: the next signer on the ring takes it
            try:
                response = await asyncio.wait_for(future, self.timeout)
            except TimeoutError:
                conn.forget(future)
                raise SignerUnavailable("signer did not answer in time") from None
            if isinstance(response, p.ErrorResult):
                raise SignerRefused(response.status, response.reason)
            return response
        raise SignerUnavailable("no signer reachable")

    async def sign(self, key_id: UUID, digest: bytes, material: p.WrappedKey) -> p.SignResult:
        return await self._call(key_id, lambda rid: p.SignRequest(rid, key_id, digest, material), p.Op.SIGN)

    async def create(self, key_id: UUID) -> p.CreateResult:
        return await self._call(key_id, lambda rid: p.CreateRequest(rid, key_id), p.Op.CREATE)

    async def ping_all(self) -> dict[str, bool]:
        """Each signer's answer to PING: True when it answered and its RNG check passed."""
        answers = await self.status_all()
        return {path: answer is not None and answer.rng_ok for path, answer in answers.items()}

    async def status_all(self) -> dict[str, p.PingResult | None]:
        """Each signer's PING answer (its RNG check and key-cache states), None when it did not answer."""

        async def ping(node: SignerNode) -> p.PingResult | None:
            try:
                conn = await node.connection()
                result = await asyncio.wait_for(conn.send(lambda rid: p.PingRequest(rid), p.Op.PING), self.timeout)
            except (SignerUnavailable, TimeoutError):
                return None
            return result if isinstance(result, p.PingResult) else None

        answers = await asyncio.gather(*(ping(node) for node in self.nodes))
        return {node.path: answer for node, answer in zip(self.nodes, answers)}

    def close(self) -> None:
        for node in self.nodes:
            node.close()


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SignerClient] = weakref.WeakKeyDictionary()


def signer_client() -> SignerClient:
    """This event loop's client (connections belong to the loop that opened them)."""
    from django.conf import settings

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = SignerClient(
            list(settings.SIGNER_SOCKETS), pool_size=settings.SIGNER_POOL_SIZE, timeout=settings.SIGNER_TIMEOUT_SECONDS
        )
        _clients[loop] = client
    return client


def signer_clients_reset() -> None:
    """Forget every loop's client (tests that change SIGNER_SOCKETS)."""
    for client in list(_clients.values()):
        client.close()
    _clients.clear()
