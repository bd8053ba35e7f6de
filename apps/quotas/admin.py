"""API keys in the admin: created here or with `manage.py apikey create`, the key shown once."""

from django.contrib import admin, messages

from apps.quotas import services
from apps.quotas.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "scopes", "rpm", "daily", "monthly", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), ("created_at", admin.DateFieldListFilter))
    search_fields = ("name", "=prefix")
    fields = ("name", "scopes", "rpm", "daily", "monthly", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke_selected"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        key, clear = services.api_key_create(
            name=obj.name, scopes=obj.scopes, rpm=obj.rpm, daily=obj.daily, monthly=obj.monthly
        )
        obj.pk, obj.prefix, obj.secret_hash, obj.created_at = key.pk, key.prefix, key.secret_hash, key.created_at
        obj._state.adding = False
        messages.warning(request, f"The new API key, shown this once: {clear}")

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request, queryset):
        count = services.api_keys_revoke(key_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Revoked {count} API key(s).", messages.SUCCESS)
