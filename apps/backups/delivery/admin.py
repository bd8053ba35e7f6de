"""Operators' view of share deliveries: state, history, tries; never the share or its wrapping."""

from __future__ import annotations

from django.contrib import admin, messages

from apps.backups.delivery import services
from apps.backups.delivery.models import DeliveryServerKey, DeliveryStatus, ShareDelivery, ShareDeliveryTransition
from homepocket.api.errors import ApplicationError
from homepocket.view_only_admin import ViewOnlyModelAdmin


class TransitionInline(admin.TabularInline):
    model = ShareDeliveryTransition
    extra = 0
    can_delete = False
    fields = ("at", "from_status", "to_status", "reason", "retry_count")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ShareDelivery)
class ShareDeliveryAdmin(ViewOnlyModelAdmin):
    list_display = ("id", "status", "backup_id", "recipient_device_id", "retry_count", "last_error", "created_at", "deadline_at")
    list_filter = ("status", "last_error", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id", "=backup_id", "=recipient_device__id", "=book__id")
    fields = ("id", "book", "backup_id", "recipient_device", "depositor_device_id", "status", "retry_count", "last_error",
              "created_at", "delivered_at", "confirmed_at", "failed_at", "deadline_at", "next_attempt_at", "master_key_id")  # fmt: skip
    readonly_fields = fields
    inlines = [TransitionInline]
    actions = ["retry_selected"]

    @admin.action(description="Retry selected FAILED deliveries (back to PENDING, audited)")
    def retry_selected(self, request, queryset):
        done, refused = 0, 0
        for delivery_id in queryset.filter(status=DeliveryStatus.FAILED).values_list("pk", flat=True):
            try:
                services.share_delivery_retry(delivery_id=delivery_id, admin_user_id=request.user.pk)
                done += 1
            except ApplicationError:
                refused += 1
        self.message_user(request, f"{done} delivery(ies) back to PENDING; {refused} refused (superseded).", messages.INFO)


@admin.register(DeliveryServerKey)
class DeliveryServerKeyAdmin(ViewOnlyModelAdmin):
    list_display = ("public_key", "master_key_id", "created_at")
    fields = ("public_key", "master_key_id", "created_at")
    readonly_fields = fields
