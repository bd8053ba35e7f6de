from rest_framework import serializers

from apps.audit.models import AuditEvent, EventType, Outcome


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "event_type", "outcome", "actor_device", "book", "target", "details"]


class AuditQuerySerializer(serializers.Serializer):
    event_type = serializers.ChoiceField(choices=EventType.choices, required=False)
    outcome = serializers.ChoiceField(choices=Outcome.choices, required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    book = serializers.UUIDField(required=False, help_text="A raw book id; hashed by the server.")
    device = serializers.UUIDField(required=False, help_text="A raw device id; hashed by the server.")
    cursor = serializers.CharField(required=False, help_text="The cursor of a `next`/`previous` link.")
