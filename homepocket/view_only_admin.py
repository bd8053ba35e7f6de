"""Admin pages that show rows but never add or edit them: those rows change only through services
(audit's chain, signing keys made in the signer, share states, photo objects, quota warnings)."""

from __future__ import annotations

from django.contrib import admin


class ViewOnlyModelAdmin(admin.ModelAdmin):
    """No add, no change; delete stays Django's unless a subclass closes it too."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False
