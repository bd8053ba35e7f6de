from django.apps import AppConfig


class HomePocketConfig(AppConfig):
    name = "homepocket"
    verbose_name = "Home Pocket"

    def ready(self) -> None:
        from homepocket import checks  # noqa: F401  (registers the system checks)
