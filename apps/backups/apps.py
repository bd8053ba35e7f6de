from django.apps import AppConfig
from django.db.models.signals import pre_migrate


class BackupsConfig(AppConfig):
    name = "apps.backups"
    label = "backups"

    def ready(self):
        from apps.backups import checks  # noqa: F401  registers the start-up checks
        from apps.backups.engine.before_migrate import backup_before_migrate

        # Django's own signal (not a model of ours): the "before migrate" backup trigger.
        pre_migrate.connect(backup_before_migrate, sender=self, dispatch_uid="backups.before_migrate")
