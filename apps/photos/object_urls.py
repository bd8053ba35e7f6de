"""The embedded mode's object store routes: the signed URLs that `storage.upload_target` and
`storage.download_url` issue when there is no S3.

    PUT /objects/encrypted/<book_id>/<photo_id>.enc?size=N&expires=T&signature=S
    GET /objects/encrypted/<book_id>/<photo_id>.enc?size=0&expires=T&signature=S

A plain ASGI app mounted in front of the 1 MiB body cap and of Django (homepocket/asgi.py): photo
uploads are up to 10 MiB, and neither Django's request (which spools the whole body before a view
runs) nor DRF should see them. It streams both ways in 64 KiB chunks, so memory stays flat
whatever the size, and enforces what S3 would: the HMAC signature (constant-time compare), the
expiry, and the exact size signed into the URL — a longer body is cut off at size+1 bytes, a
shorter one leaves nothing behind. It touches no database; the file work is storage.py's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import parse_qs

from django.conf import settings

from apps.photos import metrics, storage
from homepocket.api.envelope import envelope_error, envelope_success
from homepocket.api.errors import error_status
from homepocket.api.request_id import current_request_id, request_id_choose
from homepocket.body_limit import declared_length

logger = logging.getLogger("homepocket.photos.objects")
# Chunks are handed to a thread in batches this big: one thread hop per 256 KiB, not per frame.
WRITE_BATCH_BYTES = 256 * 1024


class ObjectURLs:
    """Route OBJECT_URL_PREFIX to the object store, everything else to `app`."""

    def __init__(self, app, *, api_version: str) -> None:
        self.app = app
        self.api_version = api_version.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(storage.OBJECT_URL_PREFIX):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        request_id = request_id_choose((headers.get(b"x-request-id") or b"").decode("latin-1"))
        token = current_request_id.set(request_id)
        started = time.perf_counter()
        exchange = _Exchange(send, request_id.encode(), self.api_version)
        try:
            await _object_request(scope, receive, exchange, headers)
        finally:
            # Never the path or query: the path names the book, the query carries the signature.
            logger.info(
                "object request",
                extra={
                    "method": scope["method"], "status": exchange.status, "bytes": exchange.bytes,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )  # fmt: skip
            current_request_id.reset(token)


class _Exchange:
    def __init__(self, send, request_id: bytes, api_version: bytes) -> None:
        self.send = send
        self.status = 0
        self.bytes = 0
        self._base = [(b"x-request-id", request_id), (b"api-version", api_version), (b"cache-control", b"private, no-store")]

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        await self.send({"type": "http.response.start", "status": status, "headers": self._base + headers})

    async def json(self, status: int, body: dict, *, close: bool = False) -> None:
        raw = json.dumps(body).encode()
        extra = [(b"connection", b"close")] if close else []
        await self.start(status, [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()), *extra])
        await self.send({"type": "http.response.body", "body": raw})

    async def error(self, code: str, message: str, *, close: bool = False, details: dict | None = None) -> None:
        await self.json(error_status(code), envelope_error(code, message, details), close=close)


async def _object_request(scope, receive, exchange: _Exchange, headers: dict) -> None:
    key = scope["path"][len(storage.OBJECT_URL_PREFIX) :]
    if storage.s3_enabled() or not storage.key_valid(key):
        return await exchange.error("NOT_FOUND", "Not found.")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        size = int(query["size"][0])
        expires = int(query["expires"][0])
        signature = query["signature"][0]
    except (KeyError, IndexError, ValueError):
        metrics.PHOTO_UPLOADS_REFUSED.labels("signature").inc()
        return await exchange.error("FORBIDDEN", "The URL is not signed.")
    method = scope["method"]
    signed_method = "GET" if method in ("GET", "HEAD") else method
    if method not in ("PUT", "GET", "HEAD"):
        return await exchange.error("METHOD_NOT_ALLOWED", "Object URLs accept PUT, GET and HEAD.")
    if not storage.local_url_verify(method=signed_method, key=key, size=size, expires=expires, signature=signature):
        metrics.PHOTO_UPLOADS_REFUSED.labels("signature").inc()
        return await exchange.error("FORBIDDEN", "The URL's signature is invalid or it has expired.", close=method == "PUT")
    if method == "PUT":
        return await _upload(receive, exchange, headers, key, size)
    return await _download(exchange, key, head=method == "HEAD")


async def _upload(receive, exchange: _Exchange, headers: dict, key: str, size: int) -> None:
    if size > settings.PHOTO_MAX_BYTES:
        return await exchange.error("PHOTO_TOO_LARGE", "Over the photo size cap.", close=True)
    length = declared_length(headers)
    if length is not None:
        # Refused before a byte is read, like S3 refuses a Content-Length other than the signed one.
        if length > size:
            metrics.PHOTO_UPLOADS_REFUSED.labels("too_large").inc()
            return await exchange.error(
                "PHOTO_TOO_LARGE", "The body is larger than the size this URL was issued for.", close=True,
                details={"size_bytes": size, "content_length": length},
            )  # fmt: skip
        if length != size:
            metrics.PHOTO_UPLOADS_REFUSED.labels("too_short").inc()
            return await exchange.error(
                "INVALID_ARGUMENT", "Content-Length must equal the size this URL was issued for.", close=True,
                details={"size_bytes": size, "content_length": length},
            )  # fmt: skip
    try:
        writer = await asyncio.to_thread(storage.LocalObjectWriter, key, size)
    except storage.LocalObjectExists:
        return await exchange.error("INVALID_STATE", "An object was already uploaded with this URL.", close=True)
    pending: list[bytes] = []
    pending_bytes = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                await asyncio.to_thread(writer.abort)
                return
            chunk = message.get("body", b"")
            if chunk:
                pending.append(chunk)
                pending_bytes += len(chunk)
            more = message.get("more_body", False)
            if pending_bytes >= WRITE_BATCH_BYTES or (not more and pending):
                await asyncio.to_thread(writer.write, b"".join(pending))
                pending, pending_bytes = [], 0
            if not more:
                break
        await asyncio.to_thread(writer.commit)
    except storage.LocalUploadRefused as refused:
        await asyncio.to_thread(writer.abort)
        metrics.PHOTO_UPLOADS_REFUSED.labels(refused.reason).inc()
        if refused.reason == "too_large":
            return await exchange.error(
                "PHOTO_TOO_LARGE", "The body is larger than the size this URL was issued for.", close=True,
                details={"size_bytes": size},
            )  # fmt: skip
        return await exchange.error(
            "INVALID_ARGUMENT", "The body is shorter than the size this URL was issued for.",
            details={"size_bytes": size, "received_bytes": refused.received},
        )  # fmt: skip
    except storage.LocalObjectExists:
        return await exchange.error("INVALID_STATE", "An object was already uploaded with this URL.")
    except BaseException:
        await asyncio.to_thread(writer.abort)
        raise
    exchange.bytes = size
    metrics.PHOTO_OBJECT_BYTES.labels("upload").inc(size)
    await exchange.json(200, envelope_success({"size_bytes": size}))


async def _download(exchange: _Exchange, key: str, *, head: bool) -> None:
    opened = await asyncio.to_thread(storage.local_object_open, key)
    if opened is None:
        return await exchange.error("PHOTO_NOT_FOUND", "No object under this URL.")
    handle, size = opened
    try:
        await exchange.start(
            200, [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]
        )
        if head:
            await exchange.send({"type": "http.response.body", "body": b""})
            return
        sent = 0
        while True:
            chunk = await asyncio.to_thread(handle.read, storage.CHUNK_BYTES)
            sent += len(chunk)
            more = bool(chunk) and sent < size
            await exchange.send({"type": "http.response.body", "body": chunk, "more_body": more})
            if not more:
                break
        exchange.bytes = sent
        metrics.PHOTO_OBJECT_BYTES.labels("download").inc(sent)
    finally:
        await asyncio.to_thread(handle.close)
