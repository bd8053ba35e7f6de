from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _policies_restore(sender, using="default", **kwargs):
    """Default policies where rows are missing, after `migrate` and after `flush` (tests' teardown)."""
    from apps.quotas.defaults import policies_seed
    from apps.quotas.models import Policy

    if Policy._meta.db_table in _tables(using):
        policies_seed(Policy, using=using)


def _tables(using: str) -> list[str]:
    from django.db import connections

    with connections[using].cursor() as cursor:
        return connections[using].introspection.table_names(cursor)


class QuotasConfig(AppConfig):
    name = "apps.quotas"
    label = "quotas"

    def ready(self):
        from apps.quotas import checks  # noqa: F401  (registers the system checks)

        post_migrate.connect(_policies_restore, sender=self)
