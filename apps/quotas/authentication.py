"""DRF authentication by `Authorization: Api-Key <key>` (service callers, operators' tools)."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework.authentication import BaseAuthentication

from apps.quotas.models import ApiKey
from apps.quotas.services import api_key_verify


@dataclass(frozen=True)
class ApiKeyPrincipal:
    api_key: ApiKey

    is_authenticated = True

    def has_scope(self, scope: str) -> bool:
        return scope in self.api_key.scopes


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "api-key":
            return None  # not ours: another authenticator (or none) decides
        key = api_key_verify(value.strip())
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request):
        return "Api-Key"

