"""Wire shapes of the relay's HTTP API (snake_case)."""

from __future__ import annotations

import math

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field({"type": "number", "description": "The client's epoch (as the client counts it), passed through unchanged."})
class ClientTimestampField(serializers.Field):
    """A JSON number kept as sent (int stays int), so the relayed frame carries the same value."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)) or not math.isfinite(data):
            raise serializers.ValidationError("A number is required.")
        return data

    def to_representation(self, value):
        return value


class RelaySendInputSerializer(serializers.Serializer):
    book_id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=["crdt_operation"])
    payload = serializers.CharField(
        trim_whitespace=False,
        help_text="Base64 of the ciphertext, at most 256 KiB; forwarded as this very string, never decoded.",
    )
    timestamp = ClientTimestampField()


class RelaySentSerializer(serializers.Serializer):
    delivered_to = serializers.IntegerField(help_text="Sockets of the book's other devices open when it was relayed.")
    seq = serializers.IntegerField(help_text="The operation's number in the book (monotonically increasing).")


class RelayTicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="Present as the subprotocol `ticket.<ticket>` beside `homepocket.v1`; one use.")
    expires_in = serializers.IntegerField(help_text="Seconds the ticket stays valid.")


class DeviceSyncSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    online = serializers.BooleanField()
    last_seen_at = serializers.DateTimeField(allow_null=True)


class SyncStatusSerializer(serializers.Serializer):
    book_id = serializers.UUIDField()
    last_relay_at = serializers.DateTimeField(allow_null=True, help_text="When the book's last operation was relayed.")
    operation_count = serializers.IntegerField(help_text="Operations relayed in the book (the last seq); counters only.")
    devices_online = serializers.ListField(child=serializers.UUIDField(), help_text="Devices with a socket open now.")
    devices = DeviceSyncSerializer(many=True)
