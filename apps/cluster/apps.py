from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _runtime_row_restore(sender, using="default", **kwargs):
    """The one RuntimeConfig row, after `migrate` and after `flush` (tests' teardown), as quotas does for policies."""
    from django.db import connections

    from apps.cluster.models import RuntimeConfig

    with connections[using].cursor() as cursor:
        tables = connections[using].introspection.table_names(cursor)
    if RuntimeConfig._meta.db_table in tables:
        RuntimeConfig.objects.using(using).get_or_create(id=1)


class ClusterConfig(AppConfig):
    name = "apps.cluster"
    label = "cluster"
    verbose_name = "Cluster"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        post_migrate.connect(_runtime_row_restore, sender=self)
