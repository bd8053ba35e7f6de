"""The cluster app's public writes: hot configuration (audited, announced to every node)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from apps.audit.models import EventType, Outcome
from apps.audit.services import audit_event_record
from apps.cluster import hot_config
from apps.cluster.models import FeatureSwitch, RuntimeConfig
from homepocket.redis_clients import broadcast

_CONFIG_FIELDS = ("log_level", "maintenance", "maintenance_message", "maintenance_retry_after")


def _announce() -> None:
    # This node applies at once; the others hear the broadcast (or poll when Redis is down).
    hot_config.hot_config_refresh()
    broadcast.publish(hot_config.TOPIC, {})


def _version_bump_and_audit(*, target: str, details: dict) -> None:
    RuntimeConfig.objects.get_or_create(id=1)
    RuntimeConfig.objects.filter(id=1).update(version=F("version") + 1)
    audit_event_record(event_type=EventType.CONFIG_CHANGED, outcome=Outcome.SUCCESS, target=target, details=details)
    transaction.on_commit(_announce)


def runtime_config_update(*, changes: dict, admin_user_id=None) -> RuntimeConfig:
    """Change the runtime configuration; every node applies it within seconds. Unknown fields are refused."""
    unknown = set(changes) - set(_CONFIG_FIELDS)
    if unknown:
        raise ValueError(f"not runtime settings: {sorted(unknown)}")
    with transaction.atomic():
        config, _ = RuntimeConfig.objects.select_for_update().get_or_create(id=1)
        for name, value in changes.items():
            setattr(config, name, value)
        config.full_clean()
        config.save(update_fields=[*changes, "updated_at"])
        _version_bump_and_audit(
            target="config:runtime",
            details={"changed": sorted(changes), **{k: v for k, v in changes.items() if k != "maintenance_message"}, "admin_user_id": admin_user_id},
        )
    config.refresh_from_db()
    return config


def feature_switch_set(*, name: str, enabled: bool, description: str | None = None, admin_user_id=None) -> FeatureSwitch:
    """Create or flip a feature switch; every node applies it within seconds."""
    with transaction.atomic():
        switch = FeatureSwitch.objects.select_for_update().filter(name=name).first() or FeatureSwitch(name=name)
        switch.enabled = enabled
        if description is not None:
            switch.description = description
        switch.full_clean()
        switch.save()
        _version_bump_and_audit(target=f"switch:{name}", details={"enabled": enabled, "admin_user_id": admin_user_id})
    return switch


def feature_switch_delete(*, name: str, admin_user_id=None) -> bool:
    """Remove a switch (code then sees its default)."""
    with transaction.atomic():
        deleted, _ = FeatureSwitch.objects.filter(name=name).delete()
        if deleted:
            _version_bump_and_audit(target=f"switch:{name}", details={"deleted": True, "admin_user_id": admin_user_id})
    return bool(deleted)
