"""DRF authentication with device tokens; refusals render as INVALID_TOKEN/FORBIDDEN envelopes."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication

from apps.pairing.device_tokens import VerifiedDevice, bearer_token_from_header, device_token_verify, token_refused_record
from homepocket.api.errors import ApplicationError
from apps.pairing.models import Device


class DeviceTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION")
        if header and header.lower().startswith("api-key "):
            return None  # a service caller: apps.quotas.authentication.ApiKeyAuthentication decides
        token = bearer_token_from_header(header)
        if token is None:
            return None
        try:
            principal = device_token_verify(token)
        except ApplicationError as refused:
            token_refused_record(token, refused)
            raise
        device_touch(principal)
        return principal, principal.claims

    def authenticate_header(self, request):
        return "Bearer"


def device_touch(principal: VerifiedDevice) -> None:
    """Record activity at most once per interval per device: no write on most requests.

    The in-memory check skips the UPDATE when the row we just loaded is fresh; the conditional
    UPDATE lets the database decide between two requests racing past that check.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.DEVICE_LAST_ACTIVE_INTERVAL_SECONDS)
    last = principal.device.last_active_at
    if last is not None and last >= cutoff:
        return
    Device.objects.filter(Q(last_active_at__isnull=True) | Q(last_active_at__lt=cutoff), pk=principal.device.pk).update(
        last_active_at=now
    )
    principal.device.last_active_at = now
