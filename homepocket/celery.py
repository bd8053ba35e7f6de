"""The Celery app. Each Django app declares its tasks in tasks.py and its schedule in PERIODIC_TASKS."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "homepocket.settings")

app = Celery("homepocket")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
