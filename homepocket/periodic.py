"""Periodic tasks declared by each app next to its tasks (CONVENTIONS 7).

An app's tasks.py lists `PERIODIC_TASKS = [PeriodicTaskSpec(...)]`; `manage.py sync_periodic_tasks`
(run by `manage.py serve` and by deployments) writes them into django-celery-beat, so beat, which
runs once per cluster, schedules them. Intervals can be overridden per task from the environment
(`PERIODIC_<NAME>_SECONDS`), and rows we once declared but no longer do are disabled, not left
running.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from django.apps import apps as django_apps
from django.db import transaction

from homepocket.env import env_int

MANAGED_PREFIX = "homepocket:"


@dataclass(frozen=True)
class PeriodicTaskSpec:
    name: str
    task: str
    every_seconds: int
    description: str = ""

    @property
    def beat_name(self) -> str:
        return MANAGED_PREFIX + self.name

    @property
    def effective_seconds(self) -> int:
        return env_int(f"PERIODIC_{self.name.upper().replace('-', '_').replace('.', '_')}_SECONDS", self.every_seconds)


def periodic_specs_collect() -> list[PeriodicTaskSpec]:
    specs: list[PeriodicTaskSpec] = []
    for config in django_apps.get_app_configs():
        try:
            module = importlib.import_module(f"{config.name}.tasks")
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.tasks":
                raise
            continue
        specs.extend(getattr(module, "PERIODIC_TASKS", []))
    return specs


def periodic_tasks_sync() -> dict[str, int]:
    """Upsert every declared task into django-celery-beat; disable managed rows no longer declared."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    specs = periodic_specs_collect()
    counts = {"created": 0, "updated": 0, "disabled": 0}
    with transaction.atomic():
        for spec in specs:
            schedule, _ = IntervalSchedule.objects.get_or_create(
                every=spec.effective_seconds, period=IntervalSchedule.SECONDS
            )
            _, created = PeriodicTask.objects.update_or_create(
                name=spec.beat_name,
                defaults={"task": spec.task, "interval": schedule, "enabled": True, "description": spec.description},
            )
            counts["created" if created else "updated"] += 1
        declared = {spec.beat_name for spec in specs}
        counts["disabled"] = (
            PeriodicTask.objects.filter(name__startswith=MANAGED_PREFIX, enabled=True)
            .exclude(name__in=declared)
            .update(enabled=False)
        )
    return counts
