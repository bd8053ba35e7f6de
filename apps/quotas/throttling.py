"""The DRF edge of the limiter: a view names its policy scopes, this counts each request.

DRF's own throttles read the cache, decide, then write (two steps, so concurrent requests
overshoot) and answer a bare 429; this runs `quota_consume` (one atomic step) after
authentication and permissions, and puts X-RateLimit-* on every response of a limited view.
"""

from __future__ import annotations

from apps.pairing.device_tokens import VerifiedDevice
from apps.quotas.authentication import ApiKeyPrincipal
from apps.quotas.models import Plan
from apps.quotas.services import QuotaSubjects, quota_consume
from homepocket.client_ip import client_ip

RATE_LIMIT_ERROR_CODES = ["RATE_LIMIT_EXCEEDED", "RETRY_LATER"]


def quota_subjects(request) -> QuotaSubjects:
    """What this request counts against, from its authenticated principal and address."""
    principal = request.user
    ip = client_ip(request)
    if isinstance(principal, VerifiedDevice):
        return QuotaSubjects(
            device_id=principal.device_id, book_id=principal.book_id, plan=principal.device.book.plan, ip=ip
        )
    if isinstance(principal, ApiKeyPrincipal):
        return QuotaSubjects(api_key=principal.api_key, plan=Plan.SERVICE, ip=ip)
    return QuotaSubjects(ip=ip)


class RateLimitedMixin:
    """For APIViews: `rate_limit_scopes = ("pairing.generate",)`; the schema lists 429 and 503 for it."""

    rate_limit_scopes: tuple[str, ...] = ()

    def check_throttles(self, request):
        super().check_throttles(request)
        if self.rate_limit_scopes:
            request.quota_headers = quota_consume(scopes=self.rate_limit_scopes, subjects=quota_subjects(request))

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in getattr(request, "quota_headers", {}).items():
            response.headers.setdefault(name, value)
        return response
