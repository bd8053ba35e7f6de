"""Maintenance mode at the edge: while the hot configuration says so, API changes answer 503 MAINTENANCE.

What a user expects of "maintenance": the app keeps showing its data and syncing, and anything
that would change the server's records is refused with a clear, retry-able answer. So:

- refused: POST, PUT, PATCH and DELETE under /api/ (pairing, books, devices, photos, shares,
  key creation, …) → 503 `MAINTENANCE` with `Retry-After` and the operator's message;
- served: every GET/HEAD/OPTIONS, `/health`, `/ready`, `/metrics`, the admin (operators switch
  maintenance off there) and the operators' audit API, and the paths that change no record:
  relay sends and tickets (Redis only) and signing (`POST /api/v1/signing/sign`, answered before
  Django by apps/signing/fast_route.py; its usage counts are flushed later). Relay sockets stay open.

No I/O: it reads the node's applied snapshot (apps/cluster/hot_config.py). Constructing it (each
handler of each process does, at start) starts that process's hot-configuration thread.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import JsonResponse
from django.utils.decorators import sync_and_async_middleware

from apps.cluster.hot_config import hot_config, hot_config_start
from homepocket.api.envelope import envelope_error
from homepocket.api.errors import error_status

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Changes no database record: Redis or the signer only.
EXEMPT_PATHS = frozenset({"/api/v1/relay/send", "/api/v1/relay/ticket", "/api/v1/signing/sign"})
MESSAGE = "The service is in maintenance: reading works, changes are refused for now; retry later."


def maintenance_refuses(method: str, path: str) -> bool:
    if not hot_config().maintenance or method not in UNSAFE_METHODS:
        return False
    return path.startswith("/api/") and not path.startswith(settings.SITE_PATH_PREFIXES) and path.rstrip("/") not in EXEMPT_PATHS


def maintenance_response() -> JsonResponse:
    config = hot_config()
    retry = max(1, config.maintenance_retry_after)
    details = {"retry_after": retry, **({"message": config.maintenance_message} if config.maintenance_message else {})}
    response = JsonResponse(envelope_error("MAINTENANCE", MESSAGE, details), status=error_status("MAINTENANCE"))
    response["Retry-After"] = str(retry)
    return response


@sync_and_async_middleware
def maintenance_middleware(get_response):
    """Refuse changes during maintenance, before anything else runs (no I/O on either path)."""
    hot_config_start()
    if iscoroutinefunction(get_response):

        async def refusing_async(request):
            return maintenance_response() if maintenance_refuses(request.method, request.path) else await get_response(request)

        return refusing_async

    def refusing(request):
        return maintenance_response() if maintenance_refuses(request.method, request.path) else get_response(request)

    return refusing
