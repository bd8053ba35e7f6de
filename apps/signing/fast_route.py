"""POST /api/v1/signing/sign as a small ASGI route mounted before Django (homepocket/asgi.py).

Why: the full Django stack serves a few thousand requests/s on this machine, a bare ASGI app tens
of thousands (docs/PERFORMANCE.md); a signature costs ~20 µs. So this route does only what the
sign needs: the API key from memory (apps/signing/callers.py), the key's record from memory
(apps/signing/selectors.py), one request on a multiplexed signer socket, a count in memory
(apps/signing/usage.py). No middleware, no database write, no audit row per signature. Same
envelope, headers, error codes and service (apps.signing.services.signing_sign) as the DRF view,
which documents the route in /api/docs/.
"""

from __future__ import annotations

import json
import logging
import time

from django.conf import settings

from apps.quotas.leases import quota_leases
from apps.quotas.models import Plan
from apps.quotas.services import QuotaSubjects
from apps.quotas.throttling import API_KEY_SCOPES
from apps.signing.callers import caller_verify
from apps.signing.serializers import InvalidSignArgument, sign_input_parse
from apps.signing.services import signing_sign
from homepocket import metrics
from homepocket.api.envelope import envelope_error, envelope_success
from homepocket.api.errors import ApplicationError
from homepocket.api.request_id import current_request_id, request_id_choose
from homepocket.client_ip import scope_client_ip

PATH = "/api/v1/signing/sign"
ROUTE = "/api/v1/signing/sign"
MAX_BODY_BYTES = 4096
log = logging.getLogger("homepocket.signing")


class _Refused(ApplicationError):
    pass


def handles(scope) -> bool:
    return scope["path"] == PATH and scope["method"] == "POST"


async def _body(receive) -> bytes:
    chunks, total = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionAbortedError
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise _Refused("The request body is larger than a sign request can be.", code="PAYLOAD_TOO_LARGE")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(headers: dict[bytes, bytes], receive, quota_headers: dict[str, str], seen: dict) -> dict:
    scheme, _, presented = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() != "api-key":
        raise _Refused("An `Authorization: Api-Key <key>` header is required.", code="INVALID_TOKEN",
                       headers={"WWW-Authenticate": "Api-Key"})  # fmt: skip
    caller = await caller_verify(presented.strip())
    seen["api_key_id"] = caller.api_key_id  # the key's requests per day (apps/accounts)
    # The key's per-minute, daily and monthly quotas, spent from a leased block in memory (one
    # Redis round trip per block, never past a limit: docs/quotas.md "Hot paths: leases"); a
    # refusal raises RATE_LIMIT_EXCEEDED with Retry-After before the signer is asked.
    quota_headers.update(
        await quota_leases.consume(
            scopes=API_KEY_SCOPES, subjects=QuotaSubjects(api_key=caller.api_key, plan=Plan.SERVICE),
            subject_key=str(caller.api_key_id),
        )
    )  # fmt: skip
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise _Refused("The body must be application/json.", code="UNSUPPORTED_MEDIA_TYPE")
    try:
        data = json.loads(await _body(receive))
    except (ValueError, UnicodeDecodeError):
        raise InvalidSignArgument("The request body is not valid JSON.") from None
    key_id, digest = sign_input_parse(data)
    return await signing_sign(api_key_id=caller.api_key_id, key_id=key_id, digest=digest)


async def sign_route(scope, receive, send) -> None:
    started = time.perf_counter()
    headers = dict(scope.get("headers") or [])
    request_id = request_id_choose((headers.get(b"x-request-id") or b"").decode("latin-1"))
    token = current_request_id.set(request_id)
    extra_headers: dict[str, str] = {}
    seen: dict = {}
    try:
        try:
            body, status = envelope_success(await _answer(headers, receive, extra_headers, seen)), 200
        except ApplicationError as exc:
            body, status = envelope_error(exc.code, exc.message, exc.details), exc.status
            extra_headers = {**extra_headers, **exc.headers}
        except ConnectionAbortedError:
            return
        except Exception as exc:
            log.exception("signing.sign_route_error", extra={"error_class": type(exc).__name__})
            body, status = envelope_error("INTERNAL_ERROR", "Internal error."), 500
        payload = json.dumps(body, separators=(",", ":")).encode()
    finally:
        current_request_id.reset(token)
    response_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"api-version", settings.API_VERSION.encode()),
        (b"x-content-type-options", b"nosniff"),
        *((name.lower().encode(), value.encode()) for name, value in extra_headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": payload})
    api_key_id = seen.get("api_key_id")
    metrics.request_observe(
        method="POST", route=ROUTE, status=status, seconds=time.perf_counter() - started, api_key_id=api_key_id,
        client_ip=scope_client_ip(scope) if api_key_id is not None else "",  # the abuse signals (apps/quotas/abuse.py)
    )  # fmt: skip
