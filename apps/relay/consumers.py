"""The relay socket: Channels owns its life (connect, auth, close codes); the hub carries its frames.

A thin edge (CONVENTIONS 4): authenticate with a service, join the hub, then per frame one
decode and one call. Refusals accept the handshake and close at once with the documented code,
because a close before accept reaches the client as an HTTP 403 with no code at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import parse_qs

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from django.conf import settings

from apps.relay import metrics, services
from apps.relay.bus import BusUnavailable
from apps.relay.hub import LocalSocket, relay_hub
from apps.relay.messages import (
    CLOSE_CODE_FOR_ERROR,
    SUBPROTOCOL,
    CloseCode,
    CrdtOperation,
    FrameError,
    Ping,
    Presence,
    client_frame_decode,
    pong_encode,
    presence_encode,
)
from homepocket.api.envelope import envelope_error
from homepocket.api.errors import ApplicationError
from homepocket.drain import drain_active

logger = logging.getLogger("homepocket.relay")


# How long a closing socket waits for the client's close reply before the app lets go of it.
CLOSE_GRACE_SECONDS = 10.0


class RelayConsumer(AsyncConsumer):
    """A Channels consumer with its own receive loop.

    No channel per consumer (with the Redis layer that would be one subscription per socket):
    frames reach sockets through the hub. And not Channels' dispatch loop: it closes database
    connections in a thread before every message, and granian only sends a close frame once the
    app's pending receive() is cancelled, which a close decided elsewhere (revocation, a slow
    reader, Redis lost, the token expiring) needs.
    """

    channel_layer_alias = None

    async def __call__(self, scope, receive, send):
        self.scope = scope
        self.base_send = send
        self.socket: LocalSocket | None = None
        self.hub = None
        self._task = asyncio.current_task()
        self._receiving = False
        self._interrupting = False
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if drain_active():
            await self._refuse_draining()
            return await self._drain_until_disconnect(receive)
        if not await self._connect():
            return await self._drain_until_disconnect(receive)
        socket = self.socket
        try:
            while socket.close_code is None:
                self._receiving = True
                try:
                    message = await receive()
                except asyncio.CancelledError:
                    if not self._interrupting:
                        raise
                    self._interrupting = False
                    self._task.uncancel()
                    continue
                finally:
                    self._receiving = False
                kind = message["type"]
                if kind == "websocket.receive":
                    await self._frame(socket, message)
                elif kind == "websocket.disconnect":
                    return
            if await self._send_close(socket.close_code, socket.close_reason):
                await self._drain_until_disconnect(receive)
        finally:
            await self._disconnected(socket)

    def _interrupt(self) -> None:
        """The hub closed this socket: wake the receive loop so it sends the close frame."""
        if self._receiving and not self._interrupting:
            self._interrupting = True
            self._task.cancel()

    # --- connect ---------------------------------------------------------------------------

    async def _connect(self) -> bool:
        book_id = str(self.scope["url_route"]["kwargs"]["book_id"])
        subprotocols = list(self.scope.get("subprotocols") or [])
        self._accept = {"type": "websocket.accept"}
        if SUBPROTOCOL in subprotocols:
            self._accept["subprotocol"] = SUBPROTOCOL
        try:
            self._since()
        except ValueError:
            return await self._refuse(CloseCode.INVALID_FRAME, "since must be a non-negative integer")
        try:
            principal = await database_sync_to_async(services.relay_socket_authenticate)(
                book_id=book_id, authorization=self._header(b"authorization"), subprotocols=subprotocols
            )
        except ApplicationError as refused:
            return await self._refuse(CLOSE_CODE_FOR_ERROR.get(refused.code, CloseCode.INVALID_TOKEN), refused.message)
        socket = LocalSocket(book_id=book_id, device_id=principal.device_id, send=self.base_send, on_close=self._interrupt)
        try:
            self.hub = await relay_hub()
            peers = await self.hub.join(socket)
        except BusUnavailable:
            return await self._refuse(CloseCode.TRY_AGAIN_LATER, "relay unavailable, retry")
        since = self._since()
        if since is not None:
            try:
                socket.catch_up(await self.hub.catch_up(socket, since))
            except BusUnavailable:
                await self.hub.leave(socket)
                return await self._refuse(CloseCode.TRY_AGAIN_LATER, "relay unavailable, retry")
        if drain_active():  # the drain began while this socket authenticated: the hub closed the others already
            await self.hub.leave(socket)
            await self._refuse_draining()
            return False
        self.socket = socket
        await self.base_send(self._accept)
        # The device learns who is online now, so it can run its sync step with them.
        for peer in peers:
            socket.push(presence_encode(Presence(device_id=peer, state="online")))
        socket.start()
        if principal.expires_at is not None:
            delay = max(0.0, principal.expires_at - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, socket.close, CloseCode.INVALID_TOKEN, "token expired")
        return True

    async def _refuse(self, code: int, reason: str) -> bool:
        """The one way a socket is refused: accept, then close with the documented code.

        A close before accept would reach the client as an HTTP 403 with no code at all.
        """
        metrics.REFUSALS.labels(str(int(code))).inc()
        await self.base_send(self._accept)
        await self._send_close(code, reason)
        return False

    async def _refuse_draining(self) -> None:
        """A new socket on a draining node: HTTP 503 where the server can answer the upgrade with a
        response (uvicorn and granian can), so a proxy tries another node (nginx: proxy_next_upstream
        http_503) in the same attempt; otherwise accept and close with 1012."""
        if "websocket.http.response" not in (self.scope.get("extensions") or {}):
            await self._refuse(CloseCode.SERVICE_RESTART, "server restarting, reconnect")
            return
        metrics.REFUSALS.labels("503").inc()
        body = json.dumps(envelope_error("RETRY_LATER", "This node is shutting down; connect again.")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"retry-after", b"1")]
        await self.base_send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
        await self.base_send({"type": "websocket.http.response.body", "body": body})

    async def _send_close(self, code: int, reason: str) -> bool:
        try:
            await asyncio.wait_for(self.base_send({"type": "websocket.close", "code": int(code), "reason": reason[:120]}), CLOSE_GRACE_SECONDS)
            return True
        except Exception:  # a peer that reads nothing: give the connection up
            return False

    async def _drain_until_disconnect(self, receive) -> None:
        try:
            while (await asyncio.wait_for(receive(), CLOSE_GRACE_SECONDS))["type"] != "websocket.disconnect":
                pass
        except asyncio.TimeoutError:
            pass

    def _since(self) -> int | None:
        """The `since` query parameter (a seq: not a secret), None when absent; ValueError if malformed."""
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("since")
        if not values:
            return None
        since = int(values[0])
        if since < 0:
            raise ValueError(since)
        return since

    def _header(self, name: bytes) -> str | None:
        for key, value in self.scope.get("headers", []):
            if key == name:
                return value.decode("latin-1")
        return None

    # --- frames ----------------------------------------------------------------------------

    async def _frame(self, socket: LocalSocket, message: dict) -> None:
        text = message.get("text")
        if text is None:
            return self._close(socket, CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
        limit = settings.RELAY_MAX_FRAME_BYTES
        # len() counts characters; only a frame that might exceed the cap in UTF-8 is encoded.
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            return self._close(socket, CloseCode.MESSAGE_TOO_BIG, f"frames are limited to {limit} bytes")
        try:
            frame = client_frame_decode(text)
        except FrameError as exc:
            return self._close(socket, CloseCode.INVALID_FRAME, str(exc))
        if isinstance(frame, CrdtOperation):
            try:
                await self.hub.relay(
                    book_id=socket.book_id, device_id=socket.device_id, operation=frame, relay_timestamp=int(time.time() * 1000)
                )
            except BusUnavailable as exc:
                logger.warning("relay publish failed", extra={"event": "relay_publish_failed", "error": str(exc)})
                self._close(socket, CloseCode.TRY_AGAIN_LATER, "relay unavailable, retry")
        elif isinstance(frame, Ping):
            socket.push(pong_encode())

    def _close(self, socket: LocalSocket, code: int, reason: str) -> None:
        metrics.REFUSALS.labels(str(int(code))).inc()
        socket.close(code, reason)

    # --- disconnect ------------------------------------------------------------------------

    async def _disconnected(self, socket: LocalSocket) -> None:
        expiry = getattr(self, "_expiry", None)
        if expiry is not None:
            expiry.cancel()
        socket.on_close = lambda: None
        await self.hub.leave(socket)
        try:
            await database_sync_to_async(services.relay_socket_closed)(device_id=socket.device_id)
        except Exception as exc:  # the database is down: last seen stays at connect time
            logger.warning("relay last-seen update failed", extra={"event": "relay_touch_failed", "error": type(exc).__name__})
