"""Django's own 404/500 (and 400/403) answers: the envelope under /api/, Django's pages elsewhere."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views import defaults

from homepocket.api.envelope import envelope_error
from homepocket.api.errors import error_status


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def _envelope_response(code: str, message: str) -> JsonResponse:
    return JsonResponse(envelope_error(code, message), status=error_status(code))


def handler400(request, exception=None):
    if _is_api(request):
        return _envelope_response("INVALID_ARGUMENT", "Bad request.")
    return defaults.bad_request(request, exception)


def handler403(request, exception=None):
    if _is_api(request):
        return _envelope_response("FORBIDDEN", "Forbidden.")
    return defaults.permission_denied(request, exception)


def handler404(request, exception=None):
    if _is_api(request):
        return _envelope_response("NOT_FOUND", "No endpoint at this path.")
    return defaults.page_not_found(request, exception)


def handler500(request):
    if _is_api(request):
        return _envelope_response("INTERNAL_ERROR", "Internal error.")
    return defaults.server_error(request)
