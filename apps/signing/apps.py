from django.apps import AppConfig


class SigningConfig(AppConfig):
    name = "apps.signing"
    label = "signing"
    verbose_name = "Signing keys"

    def ready(self) -> None:
        from apps.signing import checks  # noqa: F401  registers the start-up checks
