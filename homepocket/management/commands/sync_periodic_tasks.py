"""Write every app's declared periodic tasks into django-celery-beat."""

from django.core.management.base import BaseCommand

from homepocket.periodic import periodic_tasks_sync


class Command(BaseCommand):
    help = "Sync the periodic tasks that apps declare (PERIODIC_TASKS in tasks.py) into django-celery-beat."

    def handle(self, *args, **options):
        counts = periodic_tasks_sync()
        self.stdout.write(
            f"periodic tasks: {counts['created']} created, {counts['updated']} updated, {counts['disabled']} disabled"
        )
