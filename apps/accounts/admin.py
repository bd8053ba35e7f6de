"""Who owns which API key: operators give a key to an account here (or with manage.py account_key_create)."""

from django.contrib import admin

from apps.accounts.models import ApiKeyOwner


@admin.register(ApiKeyOwner)
class ApiKeyOwnerAdmin(admin.ModelAdmin):
    list_display = ("api_key", "user", "replaced_by", "retires_at")
    list_filter = (("retires_at", admin.EmptyFieldListFilter),)
    search_fields = ("user__username", "=api_key__prefix")
    raw_id_fields = ("api_key", "user", "replaced_by")
    readonly_fields = ("replaced_by", "retires_at")
