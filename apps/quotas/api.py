"""GET /api/v1/usage: the caller's quotas, what is used and when it resets."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from apps.quotas.serializers import UsageSerializer
from apps.quotas.services import quota_notifications, quota_usage
from apps.quotas.throttling import quota_subjects

NOTIFICATIONS_SINCE = timedelta(days=31)


class UsageView(APIView):
    authentication_classes = [*api_settings.DEFAULT_AUTHENTICATION_CLASSES, import_string(settings.API_KEY_AUTHENTICATION)]
    error_codes = ["INVALID_TOKEN", "RETRY_LATER"]

    @extend_schema(
        operation_id="usage_get",
        summary="The caller's quotas and rate limits (device token: its device and book; API key: the key)",
        description="Reading usage consumes nothing. `reset` is when the oldest counted request leaves a "
        "sliding window, or the end of a calendar window.",
        responses={200: UsageSerializer},
        auth=[{"DeviceToken": []}, {"ApiKey": []}],
        tags=["quotas"],
    )
    def get(self, request):
        subjects = quota_subjects(request)
        body = {
            "plan": subjects.plan,
            "quotas": quota_usage(subjects=subjects),
            "notifications": quota_notifications(subjects=subjects, since=timezone.now() - NOTIFICATIONS_SINCE),
        }
        return Response(UsageSerializer(body).data)
