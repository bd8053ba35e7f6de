"""POST /api/v1/backup/delivery/request as a small ASGI route mounted before Django (homepocket/asgi.py).

Why: through Django, DRF and the ORM this endpoint answered ~125 req/s on this machine, and the
delivery work itself (unwrap, ECIES, signature) was ~4% of it (docs/PERFORMANCE.md, "Share
delivery"). This route keeps the contract of DeliveryRequestView and calls the same pieces:

- the device token checked by apps.pairing.device_tokens.device_token_check, with the device row
  kept in memory for DEVICE_CACHE_SECONDS; revocation is still decided per request by the
  service's one SELECT (request_rows.py), so a revoked device never gets a share;
- the `backup.request` quota spent from a leased block in memory (apps/quotas/leases.py);
- the body parsed by DRF's JSONParser and delivery_request_input_parse, the serializer's rules;
- services.share_delivery_request (one SELECT, one INSERT … SELECT; the PENDING → DELIVERED
  transition with its history row and audit event), in one worker thread (thread_sensitive=False);
- errors rendered by the one exception handler (homepocket.api.exceptions) into the envelope, with
  X-Request-ID, API-Version, the security headers, the access-log line and the request metrics
  that request_context_middleware and the inline middlewares give Django's answers.

Requests it does not take (another method, a Content-Type other than application/json, an
https redirect to make) go to Django unchanged (`handles`).
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from rest_framework import exceptions as drf
from rest_framework.parsers import JSONParser

from apps.backups.delivery import services
from apps.backups.delivery.serializers import delivery_answer_data, delivery_request_input_parse
from apps.pairing.authentication import device_touch
from apps.pairing.device_tokens import (
    TokenRefused,
    VerifiedDevice,
    bearer_token_from_header,
    device_token_check,
    device_token_device_load,
    device_token_subject,
    token_refused_record,
)
from apps.pairing.models import Device
from apps.quotas.leases import quota_leases
from apps.quotas.services import QuotaSubjects
from homepocket import metrics
from homepocket.api.envelope import envelope_error, envelope_success
from homepocket.api.errors import ApplicationError
from homepocket.api.exceptions import envelope_exception_handler
from homepocket.api.request_id import current_request_id, request_id_choose
from homepocket.client_ip import client_ip

PATH = "/api/v1/backup/delivery/request"
ROUTE = PATH  # the route template request_context_middleware labels it with
SCOPES = ("backup.request",)  # DeliveryRequestView.rate_limit_scopes
# How long a device row (public key, book, plan) is used from memory before it is read again.
# Revocation does not wait for it: the service reads it with the request's other state.
DEVICE_CACHE_SECONDS = 5.0
DEVICE_CACHE_MAX = 10_000

access_log = logging.getLogger("homepocket.access")
# Where the service's database work runs. PostgreSQL: the loop's worker threads, each with its
# own pooled connection, so requests overlap their round trips. SQLite has one writer at a time:
# several threads would only take turns through its busy handler, which sleeps 1 to 100 ms per
# miss (measured: ~150 req/s and p99 > 1 s at 100 connections), so one thread runs them in turn.
_database_executor = ThreadPoolExecutor(1, "delivery-sqlite") if connections["default"].vendor == "sqlite" else None
_parser = JSONParser()
_devices: dict[uuid.UUID, tuple[Device, float]] = {}


def _in_database_thread(function):
    return sync_to_async(function, thread_sensitive=False, executor=_database_executor)


def handles(scope) -> bool:
    if scope["path"] != PATH or scope["method"] != "POST":
        return False
    headers = dict(scope.get("headers") or [])
    media_type, _, params = headers.get(b"content-type", b"").partition(b";")
    if media_type.strip().lower() != b"application/json" or params.strip().lower() not in (b"", b"charset=utf-8"):
        return False  # DRF's content negotiation words every other case
    return not (settings.SECURE_SSL_REDIRECT and not _secure(scope, headers))


def _secure(scope, headers: dict[bytes, bytes]) -> bool:
    if settings.SECURE_PROXY_SSL_HEADER:
        name, value = settings.SECURE_PROXY_SSL_HEADER
        forwarded = headers.get(name.removeprefix("HTTP_").replace("_", "-").lower().encode())
        if forwarded is not None:
            return forwarded.decode("latin-1").split(",")[0].strip() == value
    return scope.get("scheme") == "https"


def devices_forget() -> None:
    """Drop the remembered device rows (tests; a process keeps each at most DEVICE_CACHE_SECONDS)."""
    _devices.clear()


class _Request:
    """What client_ip() reads of a Django request, from the ASGI scope."""

    def __init__(self, scope, headers: dict[bytes, bytes]):
        client = scope.get("client")
        self.META = {"REMOTE_ADDR": client[0] if client else ""}
        forwarded = [value for name, value in scope.get("headers") or [] if name == b"x-forwarded-for"]
        if forwarded:
            self.META["HTTP_X_FORWARDED_FOR"] = b",".join(forwarded).decode("latin-1")


async def _device(device_id: uuid.UUID, *, fresh: bool = False) -> Device:
    now = time.monotonic()
    known = None if fresh else _devices.get(device_id)
    if known is not None and now - known[1] < DEVICE_CACHE_SECONDS:
        return known[0]
    device = await _in_database_thread(device_token_device_load)(device_id)
    if len(_devices) >= DEVICE_CACHE_MAX:
        _devices.clear()
    _devices[device_id] = (device, now)
    return device


async def _authenticate(headers: dict[bytes, bytes]) -> tuple[VerifiedDevice, str]:
    """The device of the request, as DeviceTokenAuthentication decides it (and audits a refusal)."""
    header = headers.get(b"authorization", b"").decode("latin-1") or None
    if header is None or header.lower().startswith("api-key "):
        refused = drf.NotAuthenticated()
        refused.auth_header = "Bearer"  # APIView.handle_exception sets it from the authenticator
        raise refused
    token = bearer_token_from_header(header)
    try:
        device_id = device_token_subject(token)
        device = await _device(device_id)
        try:
            claims = device_token_check(token, device)
        except ApplicationError:
            # Refused against a remembered row: decide on the current one, so a key, book or
            # revocation that changed answers as DRF's check would.
            device = await _device(device_id, fresh=True)
            claims = device_token_check(token, device)
    except ApplicationError as refused:
        await _in_database_thread(token_refused_record)(token, refused)
        raise
    return VerifiedDevice(device=device, claims=claims), token


async def _body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionAbortedError
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _serve(principal: VerifiedDevice, data) -> dict:
    """In a worker thread: the device's activity mark (as DRF's authentication does), then the service."""
    device_touch(principal)
    answer = services.share_delivery_request(
        device=principal.device, backup_id=data.backup_id, client_public_key=data.client_public_key,
        timestamp=data.timestamp, nonce=data.nonce, token_issued_at=principal.claims["iat"],
    )  # fmt: skip
    return delivery_answer_data(answer)


def _recheck(principal: VerifiedDevice, token: str) -> None:
    """In a worker thread, before answering an error: the device as DRF would have seen it first."""
    device = device_token_device_load(principal.device_id)
    _devices[device.id] = (device, time.monotonic())
    try:
        device_token_check(token, device)
    except ApplicationError as refused:
        token_refused_record(token, refused)
        raise
    device_touch(VerifiedDevice(device=device, claims=principal.claims))


async def _answer(scope, headers: dict[bytes, bytes], receive, quota_headers: dict[str, str], seen: dict) -> dict:
    principal, token = await _authenticate(headers)
    try:
        subjects = QuotaSubjects(
            device_id=principal.device_id, book_id=principal.book_id, plan=principal.device.book.plan,
            ip=client_ip(_Request(scope, headers)),
        )  # fmt: skip
        seen.update(device_id=principal.device_id, client_ip=subjects.ip)  # the abuse signals (apps/quotas/abuse.py)
        quota_headers.update(
            await quota_leases.consume(scopes=SCOPES, subjects=subjects, subject_key=f"{principal.device_id}|{subjects.ip}")
        )
        body = await _body(receive)
        data = _parser.parse(io.BytesIO(body)) if body else {}
        return await _in_database_thread(_serve)(principal, delivery_request_input_parse(data))
    except ConnectionAbortedError:
        raise
    except Exception as error:
        if isinstance(error, TokenRefused) or getattr(error, "code", "") == "RATE_LIMIT_EXCEEDED":
            # A refusal by the service's own revocation read, or a quota refusal (remembered in
            # memory so a caller hammering a closed limit costs no database read: not re-checked).
            if isinstance(error, TokenRefused):
                _devices.pop(principal.device_id, None)
                await _in_database_thread(token_refused_record)(token, error)
            raise
        await _in_database_thread(_recheck)(principal, token)
        raise


def _error(exc: Exception) -> tuple[dict, int, dict[str, str]]:
    if isinstance(exc, ApplicationError):
        return envelope_error(exc.code, exc.message, exc.details), exc.status, dict(exc.headers)
    response = envelope_exception_handler(exc, {})  # DRF's errors, database errors, crashes: one handler
    data = response.data
    return envelope_error(data["code"], data["message"], data.get("details")), response.status_code, dict(response.headers)


_STATIC_HEADERS = [
    (b"content-type", b"application/json"),
    (b"vary", b"Accept"),
    (b"allow", b"POST, OPTIONS"),
    (b"x-frame-options", settings.X_FRAME_OPTIONS.encode()),
    *([(b"x-content-type-options", b"nosniff")] if settings.SECURE_CONTENT_TYPE_NOSNIFF else []),
    *([(b"referrer-policy", settings.SECURE_REFERRER_POLICY.encode())] if settings.SECURE_REFERRER_POLICY else []),
    *(
        [(b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode())]
        if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
        else []
    ),
    (b"api-version", settings.API_VERSION.encode()),
]


def _hsts() -> bytes:
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value.encode()


async def request_route(scope, receive, send) -> None:
    started = time.perf_counter()
    headers = dict(scope.get("headers") or [])
    request_id = request_id_choose((headers.get(b"x-request-id") or b"").decode("latin-1"))
    token = current_request_id.set(request_id)
    quota_headers: dict[str, str] = {}
    extra_headers: dict[str, str] = {}
    seen: dict = {}
    try:
        try:
            body, status = envelope_success(await _answer(scope, headers, receive, quota_headers, seen)), 200
        except ConnectionAbortedError:
            return
        except Exception as exc:  # noqa: BLE001 — every error becomes the envelope, as in DRF
            body, status, extra_headers = _error(exc)
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        response_headers = [
            *_STATIC_HEADERS,
            (b"content-length", str(len(payload)).encode()),
            (b"x-request-id", request_id.encode()),
            *((name.lower().encode(), value.encode("latin-1")) for name, value in {**quota_headers, **extra_headers}.items()),
        ]
        if settings.SECURE_HSTS_SECONDS and _secure(scope, headers):
            response_headers.append((b"strict-transport-security", _hsts()))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})
        duration = time.perf_counter() - started
        metrics.request_observe(method="POST", route=ROUTE, status=status, seconds=duration, **seen)
        # As request_context_middleware logs it: the route template, never the path or the body.
        access_log.info("request", extra={"method": "POST", "route": ROUTE, "status": status,
                                          "duration_ms": round(duration * 1000, 2)})  # fmt: skip
    finally:
        current_request_id.reset(token)
