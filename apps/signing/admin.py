"""Signing keys in the admin: which API key owns each, when made, last use and use count. Never key material."""

from django.contrib import admin

from apps.signing.models import SigningKey
from homepocket.view_only_admin import ViewOnlyModelAdmin


@admin.register(SigningKey)
class SigningKeyAdmin(ViewOnlyModelAdmin):
    list_display = ("address", "id", "api_key", "created_at", "last_used_at", "use_count", "master_key_id")
    list_filter = ("api_key", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("api_key",)
    search_fields = ("=id", "address", "public_key")
    # wrapped_key and wrapped_dek are left out on purpose: nothing an operator needs to see.
    fields = ("id", "api_key", "public_key", "address", "master_key_id", "created_at", "last_used_at", "use_count")
    readonly_fields = fields
