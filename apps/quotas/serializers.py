"""Shapes of the usage endpoint."""

from rest_framework import serializers


class QuotaUsageSerializer(serializers.Serializer):
    policy = serializers.CharField(source="scope", help_text='The policy scope, e.g. "photos.upload".')
    subject = serializers.CharField(help_text="What is counted: device, book, api_key or ip.")
    window = serializers.CharField(help_text="minute, 10min or hour (sliding); day or month (calendar, UTC).")
    limit = serializers.IntegerField(allow_null=True, help_text="null: unlimited.")
    used = serializers.IntegerField(allow_null=True)
    remaining = serializers.IntegerField(allow_null=True)
    reset = serializers.IntegerField(allow_null=True, help_text="Epoch seconds when a request is counted off again.")
    fail_mode = serializers.CharField()


class QuotaNotificationSerializer(serializers.Serializer):
    policy = serializers.CharField(source="scope")
    subject = serializers.CharField(help_text='"book:<id>", "device:<id>" or "api_key:<id>".')
    used = serializers.IntegerField(help_text="The count when the warning share was passed.")
    limit = serializers.IntegerField()
    window_start = serializers.DateTimeField()
    created_at = serializers.DateTimeField()


class UsageSerializer(serializers.Serializer):
    plan = serializers.CharField(help_text="free or paid (the book's), or service for an API key.")
    quotas = QuotaUsageSerializer(many=True)
    notifications = QuotaNotificationSerializer(many=True, help_text="Warnings of the last 31 days, newest first.")
