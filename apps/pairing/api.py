"""Pairing API edges: parse, call a service or selector, render (CONVENTIONS 4)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.pairing import selectors, services
from apps.pairing.device_tokens import TokenRefused, bearer_token_from_header, self_signed_token_verify
from apps.pairing.serializers import BookCreatedSerializer, BookCreateInputSerializer, DeviceListSerializer


class BookCreateView(APIView):
    # The device is not registered yet: its token is verified against the key in the body.
    authentication_classes: list = []
    permission_classes = [AllowAny]
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
        token = bearer_token_from_header(request.META.get("HTTP_AUTHORIZATION"))
        if token is None:
            raise TokenRefused("missing", "Authentication credentials were not provided.")
        payload = BookCreateInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        self_signed_token_verify(token, device_id=data["device_id"], public_key=data["public_key"])
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
