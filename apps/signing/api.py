"""Signing API edges. POST /sign is normally answered by the lean ASGI route (apps/signing/fast_route.py)
before Django; this view serves it when that route is off and documents it in /api/docs/ either way."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils.module_loading import import_string
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.quotas.throttling import API_KEY_SCOPES, RateLimitedMixin
from apps.signing import services
from apps.signing.callers import caller_from_api_key
from apps.signing.serializers import SignatureSerializer, SignInputSerializer, SigningKeySerializer, sign_input_parse


class _SigningView(RateLimitedMixin, APIView):
    authentication_classes = [import_string(settings.API_KEY_AUTHENTICATION)]
    permission_classes = [IsAuthenticated]
    rate_limit_scopes = API_KEY_SCOPES


class SigningKeyCreateView(_SigningView):
    error_codes = ["INVALID_TOKEN", "FORBIDDEN", "RETRY_LATER", "RATE_LIMIT_EXCEEDED"]

    @extend_schema(
        operation_id="signing_keys_create",
        summary="Create a custodial secp256k1 key for the calling API key",
        description="The private key is made inside the signer and stored only wrapped; it never leaves the signer.",
        request=None,
        responses={201: OpenApiResponse(SigningKeySerializer, description="Key created.")},
        tags=["signing"],
    )
    def post(self, request):
        caller = caller_from_api_key(request.auth)
        key = services.signing_key_create(api_key_id=caller.api_key_id)
        return Response(SigningKeySerializer(key).data, status=201)


class SignView(_SigningView):
    error_codes = ["INVALID_TOKEN", "FORBIDDEN", "INVALID_KEY", "UNLOCK_REQUIRED", "RETRY_LATER", "RATE_LIMIT_EXCEEDED"]

    @extend_schema(
        operation_id="signing_sign",
        summary="Sign a 32-byte digest (RFC 6979, low-S) with one of the caller's keys",
        description=(
            "Served by a lean ASGI route before Django (API key checked in memory, see docs/signing.md). "
            "UNLOCK_REQUIRED and RETRY_LATER carry Retry-After in fractional seconds (50-200 ms for "
            "UNLOCK_REQUIRED) and details.retry_after_ms."
        ),
        request=SignInputSerializer,
        responses={200: SignatureSerializer},
        tags=["signing"],
    )
    def post(self, request):
        caller = caller_from_api_key(request.auth)
        key_id, digest = sign_input_parse(request.data)
        body = async_to_sync(services.signing_sign)(api_key_id=caller.api_key_id, key_id=key_id, digest=digest)
        return Response(SignatureSerializer(body).data)
