"""Operators' view of books and devices. Keys are shown as base64, never editable."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction

from apps.pairing import device_cache, services
from apps.pairing.models import Book, Device


class DeviceInline(admin.TabularInline):
    model = Device
    extra = 0
    can_delete = False
    fields = ("id", "name", "public_key_b64", "created_at", "last_active_at", "revoked_at")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Book)
class BookAdmin(admin.ModelAdmin):
    list_display = ("id", "plan", "created_at", "active_devices")
    list_filter = ("plan", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id",)
    readonly_fields = ("id", "created_at")
    inlines = [DeviceInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "plan" in form.changed_data:  # the device cache holds the plan quotas count by
            ids = [str(pk) for pk in obj.devices.values_list("pk", flat=True)]
            transaction.on_commit(lambda: device_cache.devices_changed(ids))

    @admin.display(description="active devices")
    def active_devices(self, obj: Book) -> int:
        return obj.devices.filter(revoked_at__isnull=True).count()


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "book", "created_at", "last_active_at", "revoked_at")
    list_filter = (RevokedFilter, ("created_at", admin.DateFieldListFilter), ("last_active_at", admin.DateFieldListFilter))
    search_fields = ("=id", "=book__id", "name")
    list_select_related = ("book",)
    readonly_fields = ("id", "book", "public_key_b64", "created_at", "last_active_at", "revoked_at", "tokens_valid_after")
    fields = ("id", "book", "name", "public_key_b64", "created_at", "last_active_at", "revoked_at", "tokens_valid_after")
    actions = ["revoke_selected", "revoke_tokens_selected"]

    @admin.display(description="public key (base64)")
    def public_key_b64(self, obj: Device) -> str:
        return obj.public_key_b64

    def has_add_permission(self, request):
        return False  # devices join through the API with proof of their key, never by hand

    @admin.action(description="Revoke selected devices (their tokens are refused from now on)")
    def revoke_selected(self, request, queryset):
        count = services.devices_revoke(device_ids=list(queryset.values_list("pk", flat=True)), admin_user_id=request.user.pk)
        self.message_user(request, f"Revoked {count} device(s).", messages.SUCCESS)

    @admin.action(description="Sign selected devices out (tokens issued until now are refused; the devices stay paired)")
    def revoke_tokens_selected(self, request, queryset):
        count = services.device_tokens_revoke(device_ids=list(queryset.values_list("pk", flat=True)), admin_user_id=request.user.pk)
        self.message_user(request, f"Revoked the tokens of {count} device(s); their sockets are closing.", messages.SUCCESS)
