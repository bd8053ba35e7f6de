"""The WebSocket answer for a path no app routes: accepted, then closed with 4404.

Without it Channels' router raises "No route found" and the client sees the connection fail with
no code at all; a close code tells a client its URL is wrong (docs/relay.md, close codes).
"""

from __future__ import annotations

NOT_FOUND = 4404


async def websocket_not_found(scope, receive, send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    # Accept first: a close before accept reaches the client as an HTTP 403 with no code.
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": NOT_FOUND})
