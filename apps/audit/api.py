"""Audit queries: operators see everything (staff session), a family exports its own book's events."""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.pagination import CursorPagination
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from apps.audit.selectors import audit_events_filter
from apps.audit.serializers import AuditEventSerializer, AuditQuerySerializer
from apps.quotas.throttling import RateLimitedMixin
from homepocket.api.errors import Forbidden
from homepocket.api.permissions import scope_or_staff


class AuditCursor(CursorPagination):
    ordering = "-id"
    page_size = 100


class _AuditListView(APIView):
    pagination_class = AuditCursor

    def paginated(self, request, queryset):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(AuditEventSerializer(page, many=True).data)


class AuditEventListView(RateLimitedMixin, _AuditListView):
    # API keys with the audit:read scope, or staff with the admin's session (which is why
    # /api/v1/audit/ takes the site middleware stack); a device token authenticates and is
    # then refused with 403.
    authentication_classes = [
        *api_settings.DEFAULT_AUTHENTICATION_CLASSES,
        import_string(settings.API_KEY_AUTHENTICATION),
        SessionAuthentication,
    ]
    permission_classes = [scope_or_staff("audit:read")]
    error_codes = ["INVALID_TOKEN", "FORBIDDEN"]
    rate_limit_scopes = ("api_key.minute", "api_key.day", "api_key.month")  # API keys only

    @extend_schema(
        operation_id="audit_events_list",
        summary="Audit events for operators (staff session or an API key with audit:read), newest first, cursor-paginated",
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
    error_codes = ["FORBIDDEN"]

    @extend_schema(
        operation_id="books_audit_export",
        summary="Everything the server recorded about this book (device token of the book)",
        responses={200: AuditEventSerializer(many=True)},
        tags=["audit"],
    )
    def get(self, request, book_id):
        if getattr(request.user, "book_id", None) != book_id:
            raise Forbidden("A device exports only its own book's events.", details={"reason": "book_mismatch"})
        return self.paginated(request, audit_events_filter(book_id=book_id))
