"""Audit queries: operators see everything (staff session), a family exports its own book's events."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAdminUser
from rest_framework.views import APIView

from apps.audit.selectors import audit_events_filter
from apps.audit.serializers import AuditEventSerializer, AuditQuerySerializer
from apps.pairing.authentication import DeviceTokenAuthentication
from apps.pairing.selectors import book_get_for_device


class AuditCursor(CursorPagination):
    ordering = "-id"
    page_size = 100


class _AuditListView(APIView):
    pagination_class = AuditCursor

    def paginated(self, request, queryset):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(AuditEventSerializer(page, many=True).data)


class AuditEventListView(_AuditListView):
    # Device tokens authenticate (and are then refused with 403); staff come with the admin's
    # session, which is why /api/v1/audit/ takes the site middleware stack (SITE_PATH_PREFIXES).
    authentication_classes = [DeviceTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAdminUser]
    error_codes = ["INVALID_TOKEN", "FORBIDDEN"]

    @extend_schema(
        operation_id="audit_events_list",
        summary="Audit events for operators (staff session), newest first, cursor-paginated",
        parameters=[AuditQuerySerializer],
        responses={200: AuditEventSerializer(many=True)},
        tags=["audit"],
    )
    def get(self, request):
        query = AuditQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        events = audit_events_filter(
            event_type=q.get("event_type"), outcome=q.get("outcome"), since=q.get("since"), until=q.get("until"),
            book_id=q.get("book"), device_id=q.get("device"),
        )  # fmt: skip
        return self.paginated(request, events)


class BookAuditExportView(_AuditListView):
    error_codes = ["FORBIDDEN", "BOOK_NOT_FOUND"]

    @extend_schema(
        operation_id="books_audit_export",
        summary="Everything the server recorded about this book (device token of the book)",
        responses={200: AuditEventSerializer(many=True)},
        tags=["audit"],
    )
    def get(self, request, book_id):
        book = book_get_for_device(book_id=book_id, device_book_id=request.user.book_id)
        return self.paginated(request, audit_events_filter(book_id=book.pk))
