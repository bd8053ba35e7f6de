from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "apps.quotas"
    label = "quotas"

    def ready(self):
        from apps.quotas import checks  # noqa: F401  (registers the system checks)
