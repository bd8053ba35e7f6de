"""API keys (the key shown once), rate-limit policies (edits audited, live within seconds),
the subjects near their quota, and abuse flags (resolved, and suspensions lifted, here)."""

from django.contrib import admin, messages

from apps.quotas import abuse, services
from apps.quotas.models import AbuseFlag, ApiKey, Policy, QuotaNotification
from homepocket.view_only_admin import ViewOnlyModelAdmin


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "scopes", "rpm", "daily", "monthly", "created_at", "last_used_at", "revoked_at", "suspended_at")
    list_filter = (
        ("revoked_at", admin.EmptyFieldListFilter), ("suspended_at", admin.EmptyFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    )  # fmt: skip
    search_fields = ("name", "=prefix")
    fields = (
        "name", "scopes", "rpm", "daily", "monthly", "prefix", "created_at", "last_used_at", "revoked_at", "tokens_valid_after",
        "suspended_at",
    )  # fmt: skip
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at", "tokens_valid_after", "suspended_at")
    actions = ["revoke_selected", "rotate_selected", "lift_suspension_selected"]

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
        count = services.api_keys_revoke(key_ids=list(queryset.values_list("pk", flat=True)), admin_user_id=request.user.pk)
        self.message_user(request, f"Revoked {count} API key(s).", messages.SUCCESS)


    @admin.action(description="Rotate selected API keys (the current secrets are refused from now on)")
    def rotate_selected(self, request, queryset):
        for key_id in queryset.values_list("pk", flat=True):
            rotated = services.api_key_rotate(key_id=key_id, admin_user_id=request.user.pk)
            if rotated is None:
                self.message_user(request, f"API key {key_id} is revoked: not rotated.", messages.ERROR)
            else:
                messages.warning(request, f"The new secret of {rotated[0].name} ({key_id}), shown this once: {rotated[1]}")


    @admin.action(description="Lift the suspension of selected API keys (and resolve their abuse flags)")
    def lift_suspension_selected(self, request, queryset):
        count = abuse.api_keys_suspension_lift(key_ids=list(queryset.values_list("pk", flat=True)), admin_user_id=request.user.pk)
        self.message_user(request, f"Lifted the suspension of {count} API key(s).", messages.SUCCESS)


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("scope", "plan", "subject", "limit", "window", "fail_mode", "updated_at")
    list_editable = ("limit", "fail_mode")
    list_filter = ("plan", "subject", "window", "fail_mode")
    search_fields = ("scope", "description")
    readonly_fields = ("updated_at",)

    def save_model(self, request, obj, form, change):
        # Through the service: the edit is audited and this node drops its cached copy at once.
        services.policy_update(policy=obj, changed_fields=list(form.changed_data), admin_user_id=request.user.pk)


@admin.register(QuotaNotification)
class QuotaNotificationAdmin(ViewOnlyModelAdmin):
    """Who passed 80% of a daily or monthly quota, per window: read-only, for operators to filter."""

    list_display = ("subject", "scope", "plan", "used", "limit", "window_start", "created_at")
    list_filter = ("scope", "plan", ("window_start", admin.DateFieldListFilter))
    search_fields = ("=subject",)
    date_hierarchy = "created_at"


@admin.register(AbuseFlag)
class AbuseFlagAdmin(ViewOnlyModelAdmin):
    """Abuse signals per API key and device (docs/quotas.md, "Abuse signals"): counts, never addresses."""

    list_display = ("created_at", "signal", "subject_kind", "subject_id", "observed", "action", "resolved_at")
    list_filter = ("signal", "subject_kind", "action", ("resolved_at", admin.EmptyFieldListFilter), ("created_at", admin.DateFieldListFilter))
    search_fields = ("=subject_id",)
    date_hierarchy = "created_at"
    actions = ["resolve_selected", "resolve_and_lift_selected"]

    def has_delete_permission(self, request, obj=None):
        return False  # a flag is resolved, not erased: it is the record of what was seen

    @admin.action(description="Resolve selected flags")
    def resolve_selected(self, request, queryset):
        count = abuse.abuse_flags_resolve(flag_ids=list(queryset.values_list("pk", flat=True)), admin_user_id=request.user.pk)
        self.message_user(request, f"Resolved {count} flag(s).", messages.SUCCESS)

    @admin.action(description="Resolve selected flags and lift the API key suspensions they caused")
    def resolve_and_lift_selected(self, request, queryset):
        count = abuse.abuse_flags_resolve(
            flag_ids=list(queryset.values_list("pk", flat=True)), admin_user_id=request.user.pk, lift=True
        )
        self.message_user(request, f"Resolved {count} flag(s); their suspended API keys work again.", messages.SUCCESS)
