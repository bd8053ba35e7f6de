"""Share delivery API edges: parse, call one service or selector, render (CONVENTIONS 4)."""

from __future__ import annotations

import hashlib

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.backups.delivery import keys, selectors, services
from apps.backups.delivery.serializers import (
    DeliveryAnswerSerializer,
    DeliveryConfirmInputSerializer,
    DeliveryRequestInputSerializer,
    DeliveryStatusSerializer,
    ServerKeySerializer,
    ShareDepositedSerializer,
    ShareDepositInputSerializer,
    delivery_answer_data,
    delivery_request_input_parse,
)
from apps.quotas.throttling import RATE_LIMIT_ERROR_CODES, RateLimitedMixin


class ShareDepositView(RateLimitedMixin, APIView):
    # Quota: the scope is counted once a `backup.deposit` policy row exists (apps/quotas).
    rate_limit_scopes = ("backup.deposit",)
    error_codes = ["INVALID_ARGUMENT", "INVALID_TOKEN", "DEVICE_NOT_FOUND", *RATE_LIMIT_ERROR_CODES]

    @extend_schema(
        operation_id="backup_shares_deposit",
        summary="Keep a recovery-key share for one device of the caller's book",
        description=(
            "The share (at most 4 KiB) is stored wrapped by the server's master key. A deposit for a "
            "(backup_id, recipient_device_id) that has a live delivery fails the old one (`last_error` = replaced)."
        ),
        request=ShareDepositInputSerializer,
        responses={201: OpenApiResponse(ShareDepositedSerializer, description="A new PENDING delivery.")},
        tags=["backups"],
    )
    def post(self, request):
        payload = ShareDepositInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        delivery = services.share_deposit(
            depositor_device_id=request.user.device_id, book_id=request.user.book_id, backup_id=data["backup_id"],
            recipient_device_id=data["recipient_device_id"], share=data["share"],
        )  # fmt: skip
        return Response(ShareDepositedSerializer({"delivery_id": delivery.pk, "status": delivery.status}).data, status=201)


class DeliveryRequestView(RateLimitedMixin, APIView):
    rate_limit_scopes = ("backup.request",)
    error_codes = ["INVALID_ARGUMENT", "INVALID_TOKEN", "REPLAY_DETECTED", "DELIVERY_NOT_FOUND", "INVALID_STATE",
                   *RATE_LIMIT_ERROR_CODES]  # fmt: skip

    @extend_schema(
        operation_id="backup_delivery_request",
        summary="The caller's share for a backup, ECIES-encrypted to `client_public_key` and signed by the server",
        description=(
            "Only the recipient device gets it. `timestamp` (Unix seconds) must be within 5 minutes of the server's "
            "clock; a `nonce` reused with another body is REPLAY_DETECTED, and the exact same request again "
            "answers the same bytes. After a failed attempt the next one waits (RETRY_LATER with Retry-After)."
        ),
        request=DeliveryRequestInputSerializer,
        responses={200: DeliveryAnswerSerializer},
        tags=["backups"],
    )
    def post(self, request):
        # The same parse, service and answer as the lean route (fast_route.py), which serves this
        # path before Django unless DELIVERY_LEAN_ROUTE=0; this view documents it in /api/docs/.
        data = delivery_request_input_parse(request.data)
        answer = services.share_delivery_request(
            device=request.user.device, backup_id=data.backup_id, client_public_key=data.client_public_key,
            timestamp=data.timestamp, nonce=data.nonce,
        )  # fmt: skip
        return Response(delivery_answer_data(answer))


class DeliveryConfirmView(APIView):
    error_codes = ["INVALID_ARGUMENT", "INVALID_TOKEN", "DELIVERY_NOT_FOUND", "INVALID_STATE"]

    @extend_schema(
        operation_id="backup_delivery_confirm",
        summary="Confirm (or report a failed) receipt of a delivered share",
        description=(
            "CONFIRMED when `received_successfully` and `share_sha256` matches the deposit; otherwise one retry is "
            "counted (back to PENDING, FAILED after 5). Confirming a PENDING delivery, or a CONFIRMED one with "
            "another hash, is INVALID_STATE; the same confirm again answers the same."
        ),
        request=DeliveryConfirmInputSerializer,
        responses={200: DeliveryStatusSerializer},
        tags=["backups"],
    )
    def post(self, request):
        payload = DeliveryConfirmInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        delivery = services.share_delivery_confirm(
            device=request.user.device, delivery_id=data["delivery_id"],
            received_successfully=data["received_successfully"], share_sha256=data["share_sha256"],
        )  # fmt: skip
        return Response(DeliveryStatusSerializer(delivery).data)


class DeliveryStatusView(APIView):
    error_codes = ["INVALID_TOKEN", "DELIVERY_NOT_FOUND"]

    @extend_schema(
        operation_id="backup_delivery_status",
        summary="A delivery's state (any device of its book); never the share",
        responses={200: DeliveryStatusSerializer},
        tags=["backups"],
    )
    def get(self, request, delivery_id):
        delivery = selectors.share_delivery_get_for_book(delivery_id=delivery_id, book_id=request.user.book_id)
        return Response(DeliveryStatusSerializer(delivery).data)


class ServerKeyView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    error_codes: list[str] = ["RETRY_LATER"]

    @extend_schema(
        operation_id="backup_delivery_server_key",
        summary="The public key that signs delivery answers (pin it)",
        auth=[],
        responses={200: ServerKeySerializer},
        tags=["backups"],
    )
    def get(self, request):
        public_key = keys.server_public_key()
        body = {"algorithm": "secp256k1-ecdsa-sha256", "public_key": public_key.hex(),
                "fingerprint": hashlib.sha256(public_key).hexdigest()}  # fmt: skip
        return Response(ServerKeySerializer(body).data)
