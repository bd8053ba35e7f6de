"""The request context middleware: request id, API-Version, access log and metrics.

Natively async (and sync for the test client), so it adds no thread hop on the ASGI path.
"""

from __future__ import annotations

import logging
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.utils.functional import LazyObject

from homepocket import metrics
from homepocket.api.request_id import HEADER, current_request_id, request_id_choose
from homepocket.client_ip import client_ip

access_log = logging.getLogger("homepocket.access")


class request_context_middleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        token, started = self._begin(request)
        try:
            response = self.get_response(request)
            self._finish(request, response, started)
            return response
        finally:
            current_request_id.reset(token)

    async def _acall(self, request):
        token, started = self._begin(request)
        try:
            response = await self.get_response(request)
            self._finish(request, response, started)
            return response
        finally:
            current_request_id.reset(token)

    @staticmethod
    def _begin(request):
        request_id = request_id_choose(request.headers.get(HEADER))
        request.request_id = request_id
        return current_request_id.set(request_id), time.perf_counter()

    @staticmethod
    def _finish(request, response, started):
        duration = time.perf_counter() - started
        response[HEADER] = request.request_id
        response["API-Version"] = settings.API_VERSION
        route = route_template(request)
        api_key_id, device_id = _principal_ids(request)
        metrics.request_observe(
            method=request.method, route=route, status=response.status_code, seconds=duration,
            api_key_id=api_key_id, device_id=device_id,
            client_ip=client_ip(request) if api_key_id is not None or device_id is not None else "",
        )  # fmt: skip
        # Route templates, never raw paths or query strings: paths carry book and device ids.
        access_log.info(
            "request",
            extra={
                "method": request.method,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(duration * 1000, 2),
            },
        )


def _principal_ids(request):
    """(API key id, device id) of the principal DRF put on request.user; None for what it is not.

    A session's user is still lazy here unless something read it: it is left unread (no query).
    """
    principal = request.__dict__.get("user")
    if principal is None or isinstance(principal, LazyObject):
        return None, None
    api_key = getattr(principal, "api_key", None)
    return getattr(api_key, "pk", None), getattr(principal, "device_id", None)


def route_template(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return "/" + (match.route or match.view_name or "unmatched")
