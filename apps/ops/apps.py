from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "apps.ops"
    label = "ops"
    verbose_name = "Operator dashboard"
    default_auto_field = "django.db.models.BigAutoField"
