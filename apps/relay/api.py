"""Relay HTTP edges: parse, call a service or selector, render (CONVENTIONS 4)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.quotas.throttling import RateLimitedMixin
from apps.relay import selectors, services
from apps.relay.serializers import (
    RelaySendInputSerializer,
    RelaySentSerializer,
    RelayTicketSerializer,
    SyncStatusSerializer,
)


class RelaySendView(RateLimitedMixin, APIView):
    error_codes = ["FORBIDDEN", "BOOK_NOT_FOUND", "PAYLOAD_TOO_LARGE", "RATE_LIMIT_EXCEEDED", "RETRY_LATER"]
    # Per book and day (1,000 free, 10,000 paid by default); every send counts, valid or not.
    rate_limit_scopes = ("relay.send",)

    @extend_schema(
        operation_id="relay_send",
        summary="Relay one encrypted operation to the book's other devices, for a device without a socket",
        description=(
            "The operation reaches the other devices' open sockets as a `crdt_operation` frame with the "
            "sender's `device_id`, `relay_timestamp` and the book's next `seq`; the payload is forwarded "
            "as the very same base64 string. Payloads over 256 KiB answer PAYLOAD_TOO_LARGE."
        ),
        request=RelaySendInputSerializer,
        responses={200: RelaySentSerializer},
        tags=["relay"],
    )
    def post(self, request):
        payload = RelaySendInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        seq, delivered_to = services.relay_operation_send(
            principal=request.user, book_id=data["book_id"], payload=data["payload"], timestamp=data["timestamp"]
        )
        return Response(RelaySentSerializer({"delivered_to": delivered_to, "seq": seq}).data)


class RelayTicketView(APIView):
    error_codes: list[str] = []

    @extend_schema(
        operation_id="relay_ticket",
        summary="A one-time ticket (30 s) for a browser's relay socket",
        description=(
            "Browsers cannot set an Authorization header on a WebSocket. They open "
            "`/ws/relay/{book_id}` with the subprotocols `homepocket.v1` and `ticket.<ticket>`; the ticket "
            "works once, for 30 seconds, and never appears in a URL (docs/relay.md)."
        ),
        request=None,
        responses={201: RelayTicketSerializer},
        tags=["relay"],
    )
    def post(self, request):
        ticket, ttl = services.relay_ticket_issue(principal=request.user)
        return Response(RelayTicketSerializer({"ticket": ticket, "expires_in": ttl}).data, status=201)


class SyncStatusView(APIView):
    error_codes = ["FORBIDDEN", "BOOK_NOT_FOUND", "RETRY_LATER"]

    @extend_schema(
        operation_id="books_sync_status",
        summary="The book's relay counters: last relay time, operations relayed, devices online, last seen",
        responses={200: SyncStatusSerializer},
        tags=["relay"],
    )
    def get(self, request, book_id):
        status = selectors.book_sync_status(book_id=book_id, device_book_id=request.user.book_id)
        return Response(SyncStatusSerializer(status).data)
