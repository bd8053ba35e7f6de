"""Periodic tasks declared by apps are synced into django-celery-beat, once and idempotently."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from homepocket import periodic
from homepocket.periodic import PeriodicTaskSpec


@pytest.mark.django_db
def test_it_writes_every_declared_task():
    call_command("sync_periodic_tasks", verbosity=0)
    task = PeriodicTask.objects.get(name="homepocket:sessions-clear-expired")
    assert task.task == "homepocket.sessions_clear_expired"
    assert task.interval.every == 24 * 3600
    assert task.enabled


@pytest.mark.django_db
def test_a_second_sync_changes_nothing():
    periodic.periodic_tasks_sync()
    declared = len(periodic.periodic_specs_collect())
    counts = periodic.periodic_tasks_sync()
    assert counts == {"created": 0, "updated": declared, "disabled": 0}
    assert PeriodicTask.objects.filter(name__startswith="homepocket:").count() == declared


@pytest.mark.django_db
def test_the_interval_can_be_overridden_from_the_environment(monkeypatch):
    monkeypatch.setenv("PERIODIC_SESSIONS_CLEAR_EXPIRED_SECONDS", "600")
    periodic.periodic_tasks_sync()
    assert PeriodicTask.objects.get(name="homepocket:sessions-clear-expired").interval.every == 600


@pytest.mark.django_db
def test_a_task_no_longer_declared_is_disabled(monkeypatch):
    gone = PeriodicTaskSpec(name="gone", task="homepocket.gone", every_seconds=60)
    monkeypatch.setattr(periodic, "periodic_specs_collect", lambda: [gone])
    periodic.periodic_tasks_sync()
    monkeypatch.setattr(periodic, "periodic_specs_collect", lambda: [])
    assert periodic.periodic_tasks_sync()["disabled"] == 1
    assert PeriodicTask.objects.get(name="homepocket:gone").enabled is False


@pytest.mark.django_db
def test_a_hand_made_schedule_is_left_alone():
    from django_celery_beat.models import IntervalSchedule

    schedule = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="operator's own", task="x", interval=schedule)
    periodic.periodic_tasks_sync()
    assert PeriodicTask.objects.get(name="operator's own").enabled is True
