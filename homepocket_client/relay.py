"""The relay: a WebSocket per device and book that carries encrypted CRDT updates (docs/relay.md).

    async with relay_connect(server_url, identity) as socket:
        await socket.send_operation(base64_ciphertext)
        frame = await socket.receive()   # {"type": "crdt_operation", "device_id", "seq", ...}

Native apps authenticate with an Authorization header; browsers, which cannot set one on a
WebSocket, get a one-time ticket (HomePocketClient.relay_ticket) and pass it as a subprotocol.
Neither ever goes into the URL.
"""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from homepocket_client.identity import DeviceIdentity

SUBPROTOCOL = "homepocket.v1"
# Close codes a client acts on (the server's docs/relay.md has the full table).
RETRYABLE_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 4408})


def relay_url(base_url: str, book_id: Any, since: Any = None) -> str:
    """The socket's URL; `since` (the last seq the device saw) asks a server with a backlog to catch up."""
    scheme, _, rest = base_url.rstrip("/").partition("://")
    query = "" if since is None else f"?since={since}"
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws/relay/{book_id}{query}"


class RelaySocket:
    """One open relay socket. Frames are JSON objects; payloads stay base64 strings."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send_operation(self, payload: str, *, timestamp: int | float | None = None) -> None:
        """Send one encrypted update (base64) to the book's other devices."""
        stamp = int(time.time() * 1000) if timestamp is None else timestamp
        await self.connection.send(json.dumps({"type": "crdt_operation", "payload": payload, "timestamp": stamp}))

    async def ping(self) -> None:
        await self.connection.send('{"type":"ping"}')

    async def receive(self) -> dict[str, Any]:
        """The next frame; websockets' ConnectionClosed (with .rcvd.code) once the server closed."""
        return json.loads(await self.connection.recv())

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> RelaySocket:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()


async def relay_connect(
    base_url: str,
    identity: DeviceIdentity,
    *,
    book_id: Any = None,
    ticket: str | None = None,
    token: str | None = None,
    since: Any = None,
    **options: Any,
) -> RelaySocket:
    """Open the relay socket of the identity's book (or `book_id`): bearer token, or `ticket` like a browser."""
    target = book_id if book_id is not None else identity.book_id
    if ticket is not None:
        options.setdefault("subprotocols", [SUBPROTOCOL, f"ticket.{ticket}"])
    else:
        options.setdefault("additional_headers", {"Authorization": f"Bearer {token or identity.book_token()}"})
        options.setdefault("subprotocols", [SUBPROTOCOL])
    options.setdefault("max_size", 2**20)
    return RelaySocket(await connect(relay_url(base_url, target, since), **options))
