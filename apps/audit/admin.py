"""Operators read the audit trail here; nobody edits it (tamper evidence would flag it anyway)."""

from django.contrib import admin

from apps.audit.models import AuditEvent
from homepocket.view_only_admin import ViewOnlyModelAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ViewOnlyModelAdmin):
    list_display = ("created_at", "event_type", "outcome", "actor_device_short", "book_short", "target")
    list_filter = ("event_type", "outcome", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=actor_device", "=book")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    @admin.display(description="device (hash)")
    def actor_device_short(self, obj):
        return obj.actor_device[:12]

    @admin.display(description="book (hash)")
    def book_short(self, obj):
        return obj.book[:12]

    def has_delete_permission(self, request, obj=None):
        return False
