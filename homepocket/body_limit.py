"""Refuse request bodies over MAX_REQUEST_BODY_BYTES with 413 PAYLOAD_TOO_LARGE before reading them.

Django's ASGI handler reads a whole body into a spooled file before any middleware runs, so the
cap has to sit in front of it: a declared Content-Length over the cap is refused at once, and a
body without one (chunked) is buffered only up to the cap.
"""

from __future__ import annotations

import json

from homepocket.api.envelope import envelope_error
from homepocket.api.request_id import current_request_id, request_id_choose


def declared_length(headers: dict[bytes, bytes]) -> int | None:
    """The Content-Length an ASGI request declares: None without one, -1 when it is not a number."""
    declared = headers.get(b"content-length")
    if declared is None:
        return None
    try:
        return int(declared)
    except ValueError:
        return -1


class BodyLimitMiddleware:
    def __init__(self, app, *, max_bytes: int, api_version: str):
        self.app = app
        self.max_bytes = max_bytes
        self.api_version = api_version.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = declared_length(headers)
        if length is not None:
            if length > self.max_bytes:
                return await self._refuse(scope, send)
            return await self.app(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE") and b"transfer-encoding" not in headers:
            return await self.app(scope, receive, send)
        # No declared length: buffer up to the cap, then replay the body as one message.
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                return await self._refuse(scope, send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, send):
        headers = dict(scope.get("headers") or [])
        request_id = request_id_choose((headers.get(b"x-request-id") or b"").decode("latin-1"))
        token = current_request_id.set(request_id)
        try:
            body = json.dumps(
                envelope_error("PAYLOAD_TOO_LARGE", f"The request body is larger than {self.max_bytes} bytes.")
            ).encode()
        finally:
            current_request_id.reset(token)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    (b"api-version", self.api_version),
                    # The unread body makes the connection unusable for a next request.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

