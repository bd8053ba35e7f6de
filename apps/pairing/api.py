"""Pairing API edges: parse, call a service or selector, render (CONVENTIONS 4)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.pairing import codes, selectors, services
from homepocket.client_ip import client_ip
from apps.pairing.device_tokens import (
    TokenRefused,
    bearer_token_from_header,
    self_signed_token_verify,
)
from apps.quotas.throttling import RateLimitedMixin
from apps.pairing.serializers import (
    BookCreatedSerializer,
    BookCreateInputSerializer,
    DeviceListSerializer,
    DeviceRevokedSerializer,
    PairingCodeSerializer,
    PairingExchangeInputSerializer,
    PairingExchangeQuerySerializer,
    PairingExchangeSerializer,
    PairingGenerateInputSerializer,
    PairingMatchSerializer,
    PairingVerifyInputSerializer,
)


class RegistrationView(APIView):
    """A call by a device that is not registered yet: its token is checked against the body's key."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def registration(self, request, serializer_class) -> tuple[uuid.UUID, dict]:
        """(the token's device id, the validated body), or the documented refusal."""
        token = bearer_token_from_header(request.META.get("HTTP_AUTHORIZATION"))
        if token is None:
            raise TokenRefused("missing", "Authentication credentials were not provided.")
        payload = serializer_class(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        device_id = self_signed_token_verify(token, public_key=data["public_key"], device_id=data.get("device_id"))
        return device_id, data


class BookCreateView(RegistrationView):
    error_codes = ["INVALID_ARGUMENT", "INVALID_TOKEN", "DEVICE_ALREADY_REGISTERED"]

    @extend_schema(
        operation_id="books_create",
        summary="Create a book with its first device",
        description=(
            "The bearer token must be signed by the Ed25519 key in the body (proof of possession), "
            "with `sub` = `device_id` and no `book_id` claim. A retry of the same registration answers "
            "200 with the same book."
        ),
        request=BookCreateInputSerializer,
        auth=[{"DeviceToken": []}],
        responses={
            201: OpenApiResponse(BookCreatedSerializer, description="Book created."),
            200: OpenApiResponse(BookCreatedSerializer, description="The same registration again: the existing book."),
        },
        tags=["books"],
    )
    def post(self, request):
        _, data = self.registration(request, BookCreateInputSerializer)
        book, device, created = services.book_create(
            device_id=data["device_id"], public_key=data["public_key"], device_name=data["device_name"]
        )
        body = BookCreatedSerializer({"book_id": book.id, "device_id": device.id}).data
        return Response(body, status=201 if created else 200)


class BookDeviceListView(APIView):
    error_codes = ["INVALID_TOKEN", "FORBIDDEN", "BOOK_NOT_FOUND", "NOT_FOUND"]

    @extend_schema(
        operation_id="books_devices_list",
        summary="List the active devices of a book",
        responses={200: DeviceListSerializer},
        tags=["books"],
    )
    def get(self, request, book_id):
        principal = request.user
        book = selectors.book_get_for_device(book_id=book_id, device_book_id=principal.book_id)
        devices = list(selectors.book_devices_active(book=book))
        for device in devices:
            device.is_current = device.pk == principal.device_id
        return Response(DeviceListSerializer({"devices": devices, "total_count": len(devices)}).data)


class PairingGenerateView(RateLimitedMixin, APIView):
    error_codes = ["FORBIDDEN", "BOOK_NOT_FOUND"]
    rate_limit_scopes = ("pairing.generate",)

    @extend_schema(
        operation_id="pairing_generate",
        summary="Make a 6-digit pairing code for the caller's book (live 5 minutes)",
        request=PairingGenerateInputSerializer,
        responses={201: PairingCodeSerializer},
        tags=["pairing"],
    )
    def post(self, request):
        payload = PairingGenerateInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        principal = request.user
        selectors.book_get_for_device(book_id=payload.validated_data["book_id"], device_book_id=principal.book_id)
        code, expires_at = services.pairing_code_create(device=principal.device)
        body = {
            "short_code": code,
            "expires_at": datetime.fromtimestamp(expires_at, tz=timezone.utc),
            "ttl_seconds": codes.CODE_TTL_SECONDS,
        }
        return Response(PairingCodeSerializer(body).data, status=201)


class PairingVerifyView(RateLimitedMixin, RegistrationView):
    rate_limit_scopes = ("pairing.verify",)
    error_codes = [
        "INVALID_TOKEN", "INVALID_SHORT_CODE", "SHORT_CODE_EXPIRED", "DEVICE_LIMIT_REACHED",
        "DEVICE_ALREADY_REGISTERED", "RATE_LIMIT_EXCEEDED",
    ]  # fmt: skip

    @extend_schema(
        operation_id="pairing_verify",
        summary="Join a book with its pairing code",
        description=(
            "Bearer: a registration token signed by `public_key`, `sub` = the new device's id, no `book_id`. "
            "5 failed codes per device or per client IP in 10 minutes answer RATE_LIMIT_EXCEEDED."
        ),
        request=PairingVerifyInputSerializer,
        responses={200: PairingMatchSerializer},
        auth=[{"DeviceToken": []}],
        tags=["pairing"],
    )
    def post(self, request):
        device_id, data = self.registration(request, PairingVerifyInputSerializer)
        match = services.pairing_verify(
            short_code=data["short_code"],
            device_id=device_id,
            public_key=data["public_key"],
            device_name=data["device_name"],
            client_ip=client_ip(request),
        )
        body = {
            "matched": True,
            "peer_public_key": match.initiator_public_key,
            "peer_device_id": match.initiator_device_id,
            "book_id": match.book_id,
            "device_id": match.device.pk,
        }
        return Response(PairingMatchSerializer(body).data)


class PairingExchangeView(APIView):
    error_codes = ["INVALID_SHORT_CODE", "SHORT_CODE_EXPIRED"]

    @extend_schema(
        operation_id="pairing_exchange",
        summary="The joiner's key once it has verified (given once); `wait` long-polls",
        request=PairingExchangeInputSerializer,
        parameters=[PairingExchangeQuerySerializer],
        responses={200: PairingExchangeSerializer},
        tags=["pairing"],
    )
    def post(self, request):
        payload = PairingExchangeInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        query = PairingExchangeQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        completion = services.pairing_exchange(
            short_code=payload.validated_data["short_code"], device=request.user.device, wait_seconds=query.validated_data["wait"]
        )
        if completion is None:
            return Response(PairingExchangeSerializer({"status": "waiting"}).data)
        body = {"status": "completed", "peer_public_key": completion.joiner_public_key, "peer_device_id": completion.joiner_device_id}
        return Response(PairingExchangeSerializer(body).data)


class DeviceRevokeView(APIView):
    error_codes = ["FORBIDDEN", "BOOK_NOT_FOUND", "DEVICE_NOT_FOUND"]

    @extend_schema(
        operation_id="books_devices_revoke",
        summary="Revoke a device of the book (itself or another); its tokens are refused from then on",
        responses={200: DeviceRevokedSerializer},
        tags=["books"],
    )
    def delete(self, request, book_id, device_id):
        book = selectors.book_get_for_device(book_id=book_id, device_book_id=request.user.book_id)
        device = services.device_revoke(book_id=book.pk, device_id=device_id, actor_device_id=request.user.device_id)
        return Response(DeviceRevokedSerializer({"device_id": device.pk, "revoked_at": device.revoked_at}).data)
