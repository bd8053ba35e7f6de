"""Hot configuration in the admin: the one runtime row and the feature switches, saved through the services."""

from __future__ import annotations

from django.contrib import admin

from apps.cluster import services
from apps.cluster.models import FeatureSwitch, RuntimeConfig


@admin.register(RuntimeConfig)
class RuntimeConfigAdmin(admin.ModelAdmin):
    list_display = ("__str__", "log_level", "maintenance", "updated_at")
    fields = ("log_level", "maintenance", "maintenance_message", "maintenance_retry_after", "version", "updated_at")
    readonly_fields = ("version", "updated_at")

    def has_add_permission(self, request):
        return False  # one row, made by the migration

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        # Through the service: audited, the version bumped, every node told.
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        if changes:
            services.runtime_config_update(changes=changes, admin_user_id=request.user.pk)


@admin.register(FeatureSwitch)
class FeatureSwitchAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "description", "updated_at")
    list_editable = ("enabled",)
    search_fields = ("name", "description")
    readonly_fields = ("updated_at",)

    def get_readonly_fields(self, request, obj=None):
        return ("name", "updated_at") if obj is not None else ("updated_at",)  # a rename would be a new switch

    def save_model(self, request, obj, form, change):
        services.feature_switch_set(name=obj.name, enabled=obj.enabled, description=obj.description, admin_user_id=request.user.pk)

    def delete_model(self, request, obj):
        services.feature_switch_delete(name=obj.name, admin_user_id=request.user.pk)

    def delete_queryset(self, request, queryset):
        for name in queryset.values_list("name", flat=True):
            services.feature_switch_delete(name=name, admin_user_id=request.user.pk)
