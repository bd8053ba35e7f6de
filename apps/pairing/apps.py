from django.apps import AppConfig


class PairingConfig(AppConfig):
    name = "apps.pairing"
    label = "pairing"
    verbose_name = "Books and devices"
